"""mtbench's tests. A regular package, so `from tests.conftest import ...` finds these files
even where an installed distribution ships a top-level `tests` package of its own
(avalanche-lib 0.6.0, a test dependency, does)."""
