"""SparseMask-style search space: a MobileNetV2 encoder with 9 taps and a sparse dense-connectivity decoder.

- :mod:`.topology` — taps, decoder stages and the 90 candidate connections (names ``tapJ`` / ``upK``);
- :mod:`.encoder` — the MobileNetV2 encoder (any band count, optional ImageNet weights file, given when
  building: it is not part of an architecture);
- :mod:`.supernet` — the dense decoder with one noisy gate per connection (what the search trains);
- :mod:`.derive` — gates → kept connections: threshold plus the official clean-up rules;
- :mod:`.arch` — the architecture JSON (validated, format-versioned), ``max_arch`` / ``min_arch`` / ``sample``;
- :mod:`.network` — the derived network an architecture describes (``build``, ``build_from_spec``);
- :mod:`.cost` — analytic parameter and MAC counts (fvcore conventions) per connection;
- :mod:`.space` — :class:`SparseMaskSearchSpace`, the search-space contract in one object.
"""
