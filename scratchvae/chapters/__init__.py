"""The lecture's story after the core, one chapter a file, in the lecture's order.

    autoencoder.py      slides 3-5     where the lecture starts: z = encoder(x), no KL (figure 10;
                                       autoencoder_run.py draws it from a VAE's checkpoint)
    estimators.py       slide 14       why reparameterise: its gradient against the score function's
    beta_sweep.py       slides 12-13   what the KL term does: the KL weighted by beta, rate and distortion
    posterior.py        slides 17-21   the true posterior p(z|x) and log p(x) on a grid (2-D latent)
    inference.py        slides 19-24   variational inference for one x: the best lambda, and the two gaps

Two steps beyond the lecture:

    iwae.py             the importance-weighted bound L_k as the training objective
    cvae.py             a conditional VAE, "draw me a 7" (cvae_run.py trains it and draws it)
"""
