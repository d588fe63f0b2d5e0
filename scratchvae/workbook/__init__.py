"""The workbook: write the backward passes yourself, and a checker that names your mistake.

    scratchvae workbook start WORKBOOK      the eight blank exercises, in the lecture's order
    scratchvae workbook check WORKBOOK [N]  what is right, what is wrong, and why
    scratchvae workbook train WORKBOOK      the demo's VAE trained with your functions

    exercises/   the blank files `start` copies (package data, not imported from here)
    checks.py    per exercise: the package's own answer, the inputs with their right answers
                 (float64 finite differences), and the catalogue of classic mistakes
    checker.py   runs a learner's function, compares, and recognises the mistakes
    training.py  the two training runs (yours and scratchvae's) and their figure
    cli.py       the commands

docs/workbook.md is the learner's guide.
"""
