"""Formula slips mutmut cannot make (properties, module constants, code outside the mutated modules).

Each: the file, the original text (exactly once in it), the slip, and the default-run tests that
must fail with it applied (run.py --hand).
"""
HAND_MUTANTS = [
]
