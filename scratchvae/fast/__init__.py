"""The optional fast engine: the read-along numbers, computed faster on a 2-core CPU.

Nothing here is new mathematics, and nothing here runs unless you ask for it:

    fused_step.py   ``train --engine fused``: VAE.loss_and_grads + Adam.step fused for two cores
    fused_eval.py   ``evaluate --engine fused``: VAE.log_weights for the importance-sampled bound
    workers.py      running two workers: shared memory, BLAS threads, hand-overs
    tuning.py       how OpenBLAS's threads wait and NumPy's temporaries reuse memory (set on import)

Each is tested equal to the read-along code it replaces (tests/fast/).
"""
