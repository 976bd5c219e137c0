"""What can be searched: each space behind one contract (:mod:`.base`: ``SearchSpace``, ``SEARCH_SPACES``,
``get_search_space``), the architecture-JSON reading they share (:mod:`.arch_json`), and the spaces
themselves (:mod:`.fasterseg`, :mod:`.sparsemask`), registered through entry points.
"""
