"""FasterSeg-style multi-resolution search space (Chen et al., ICLR 2020).

``config`` (the space's knobs and presets), ``ops`` (the plain operators of derived networks),
``slimmable`` (width-switchable operators of the supernet), ``supernet`` (the lattice with teacher and
student architecture parameters), ``derive`` (the method's derivation rules), ``arch`` (the architecture
JSON), ``network`` (the plain network an architecture describes), ``cost`` (its analytic parameter and MAC
counts) and ``space`` (:class:`~.space.FasterSegSearchSpace`, the search-space contract in one object).
"""
