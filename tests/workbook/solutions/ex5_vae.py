"""Exercise 5 of 8: the whole VAE backward, assembled from your pieces (slide 15).

Slide 15 sums it up: minimise, by gradient descent,

    L(theta, phi) = sum_i [ -E_{z ~ q_theta(z|x_i)}[ log p_phi(x_i|z) ] + KL( q_theta(z|x_i) || p(z) ) ]

Here, as in scratchvae, the loss of a batch is the MEAN over its N datapoints (the sum / N:
nats per datapoint whatever the batch size), and the expectation is the mean over L samples
z_il = mu_i + sigma_i * eps_il:

    loss = 1/N sum_i [ -1/L sum_l log p(x_i | z_il) + KL(q(z|x_i) || N(0, I)) ]

The network is the demo's, with one hidden layer of ReLUs in the encoder and in the decoder:

    encoder   h = relu(x W1 + b1) ;  mu = h W_mu + b_mu ;  logvar = h W_logvar + b_logvar
    decoder   h_dec = relu(z W1' + b1') ;  logits = h_dec W_logits + b_logits

vae_forward below is written for you, from your functions of exercises 2-4. Read it, then
write vae_backward: the same lines in reverse, each the chain rule of its forward partner,
using your functions of exercises 1-4. `scratchvae workbook train WORKBOOK` then trains the
demo's VAE with these two functions (and your Adam of exercise 6).

Check it:   scratchvae workbook check WORKBOOK 5      (WORKBOOK: the folder of this file)
Stuck?      docs/derivations.md, sections 6-8; the package's own answer is in
            scratchvae/vae.py: VAE.loss_and_grads (its backward half)
"""
import numpy as np

from ex1_layers import dense_backward, relu_backward                       # noqa: F401
from ex2_bernoulli import bernoulli_log_likelihood, bernoulli_log_likelihood_grads   # noqa: F401
from ex3_kl import kl_standard_normal, kl_standard_normal_grads            # noqa: F401
from ex4_reparameterise import reparameterise, reparameterise_backward    # noqa: F401


def vae_forward(params, x, eps):
    """The batch-mean negative ELBO (written for you: read it, and leave it as it is).

    Given:     params, a dict of arrays: "enc.fc1.W" (D, H), "enc.fc1.b" (H,), "enc.mu.W" (H, K),
               "enc.mu.b" (K,), "enc.logvar.W" (H, K), "enc.logvar.b" (K,), "dec.fc1.W" (K, H),
               "dec.fc1.b" (H,), "dec.logits.W" (H, D), "dec.logits.b" (D,);
               x (N, D) a batch of images in [0, 1]; eps (L, N, K) ~ N(0, I)
    Returns:   loss (a number), and cache: what the backward needs
    """
    L, N, K = eps.shape
    p = params
    h = np.maximum(x @ p["enc.fc1.W"] + p["enc.fc1.b"], 0)              # (N, H)   encoder's hidden layer
    mu = h @ p["enc.mu.W"] + p["enc.mu.b"]                             # (N, K)   mean of q(z|x)
    logvar = h @ p["enc.logvar.W"] + p["enc.logvar.b"]                 # (N, K)   log sigma^2 of q(z|x)
    z = reparameterise(mu, logvar, eps)                                # (L, N, K)  exercise 4
    h_dec = np.maximum(z.reshape(L * N, K) @ p["dec.fc1.W"] + p["dec.fc1.b"], 0)    # (L*N, H)
    logits = (h_dec @ p["dec.logits.W"] + p["dec.logits.b"]).reshape(L, N, -1)    # (L, N, D)
    rec = -np.mean(bernoulli_log_likelihood(x, logits), axis=0)        # (N,)  -E_q[log p(x|z)], exercise 2
    kl = kl_standard_normal(mu, logvar)                                # (N,)  KL(q(z|x) || N(0, I)), exercise 3
    loss = np.mean(rec + kl)                                           # the batch mean, slide 15
    cache = {"h": h, "mu": mu, "logvar": logvar, "z": z, "h_dec": h_dec, "logits": logits}
    return loss, cache


def vae_backward(params, x, eps, cache):
    """The gradient of vae_forward's loss with respect to every parameter (slide 15).

    Given:     params, x, eps as for vae_forward, and the cache it returned
    Returns:   grads, a dict with the same keys as params and arrays of the same shapes:
               grads[name] = d(loss)/d(params[name])
    """
    p, c = params, cache
    L, N, K = eps.shape
    D = x.shape[1]
    d_logits = -bernoulli_log_likelihood_grads(x, c["logits"]) / (L * N)      # (L, N, D)
    dh_dec, dW_logits, db_logits = dense_backward(c["h_dec"], p["dec.logits.W"], d_logits.reshape(L * N, D))
    da_dec = relu_backward(c["h_dec"], dh_dec)
    dz, dW_dec1, db_dec1 = dense_backward(c["z"].reshape(L * N, K), p["dec.fc1.W"], da_dec)
    dmu, dlogvar = reparameterise_backward(dz.reshape(L, N, K), eps, c["logvar"])
    dkl_dmu, dkl_dlogvar = kl_standard_normal_grads(c["mu"], c["logvar"])
    dmu = dmu + dkl_dmu / N
    dlogvar = dlogvar + dkl_dlogvar / N
    dh_mu, dW_mu, db_mu = dense_backward(c["h"], p["enc.mu.W"], dmu)
    dh_logvar, dW_logvar, db_logvar = dense_backward(c["h"], p["enc.logvar.W"], dlogvar)
    da = relu_backward(c["h"], dh_mu + dh_logvar)
    _, dW1, db1 = dense_backward(x, p["enc.fc1.W"], da)
    return {"enc.fc1.W": dW1, "enc.fc1.b": db1, "enc.mu.W": dW_mu, "enc.mu.b": db_mu,
            "enc.logvar.W": dW_logvar, "enc.logvar.b": db_logvar, "dec.fc1.W": dW_dec1,
            "dec.fc1.b": db_dec1, "dec.logits.W": dW_logits, "dec.logits.b": db_logits}
