"""FasterSeg search: latency model (``latency``), the bilevel search (``search``), its config (``config``),
the latency-model check (``latency_check``) and the architecture-evolution plot (``plots``)."""
