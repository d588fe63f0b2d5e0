"""Surviving mutants that no test can tell from the original, each with the reason.

EQUIVALENT[name] = (the mutated line as mutmut writes it, why it computes the same numbers).
run.py counts a survivor as equivalent only if its change is still that line.
"""
EQUIVALENT = {
}
