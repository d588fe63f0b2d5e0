"""Every catalogued mistake, made the way a learner makes it: one edit of a correct solution
(tests/workbook/solutions/), written independently of the catalogue's own wrong implementations.

MISTAKES[key] = (file, the solution's line, the line with the slip[, another line, its slip ...]). tests/workbook/test_checks.py
checks that the checker answers each edit with that mistake's hint, and no other's.
"""

MISTAKES = {
    # exercise 1
    "dense_dW_transposed": ("ex1_layers.py", "dW = x.T @ dout", "dW = dout.T @ x"),
    "dense_db_mean": ("ex1_layers.py", "db = dout.sum(axis=0)", "db = np.mean(dout, axis=0)"),
    "dense_db_axis": ("ex1_layers.py", "db = dout.sum(axis=0)", "db = dout.sum(axis=-1)"),
    "relu_ge": ("ex1_layers.py", "return dout * (y > 0)", "return np.where(y >= 0, dout, 0.0)"),
    "relu_no_dout": ("ex1_layers.py", "return dout * (y > 0)", "return (y > 0).astype(y.dtype)"),
    "tanh_of_y": ("ex1_layers.py", "return dout * (1 - y ** 2)", "return dout / np.cosh(y) ** 2"),
    "tanh_no_dout": ("ex1_layers.py", "return dout * (1 - y ** 2)", "return 1 - y * y"),
    # exercise 2
    "bernoulli_unstable": ("ex2_bernoulli.py", "return np.sum(x * logits - softplus(logits), axis=-1)",
                           "s = 1 / (1 + np.exp(-logits))\n"
                           "    return np.sum(x * np.log(s) + (1 - x) * np.log(1 - s), axis=-1)"),
    "bernoulli_no_sum": ("ex2_bernoulli.py", "return np.sum(x * logits - softplus(logits), axis=-1)",
                         "return x * logits - softplus(logits)"),
    "bernoulli_pixel_mean": ("ex2_bernoulli.py", "return np.sum(x * logits - softplus(logits), axis=-1)",
                             "return np.mean(x * logits - softplus(logits), axis=-1)"),
    "bernoulli_negated": ("ex2_bernoulli.py", "return np.sum(x * logits - softplus(logits), axis=-1)",
                          "return np.sum(softplus(logits) - x * logits, axis=-1)"),
    "bernoulli_grads_unstable": ("ex2_bernoulli.py", "return x - sigmoid(logits)",
                                 "return x - np.exp(logits) / (1 + np.exp(logits))"),
    "bernoulli_grad_sign": ("ex2_bernoulli.py", "return x - sigmoid(logits)", "return sigmoid(logits) - x"),
    "bernoulli_grad_wrt_s": ("ex2_bernoulli.py", "return x - sigmoid(logits)",
                             "s = sigmoid(logits)\n    return (x - s) / (s * (1 - s))"),
    # exercise 3
    "kl_sign": ("ex3_kl.py", "return -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=-1)",
                "return 0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=-1)"),
    "kl_no_half": ("ex3_kl.py", "return -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=-1)",
                   "return np.sum(mu ** 2 + np.exp(logvar) - logvar - 1, axis=-1)"),
    "kl_sigma_for_variance": ("ex3_kl.py", "return -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=-1)",
                              "sigma = np.exp(0.5 * logvar)\n"
                              "    return -0.5 * np.sum(1 + logvar - mu ** 2 - sigma, axis=-1)"),
    "kl_logvar_as_log_sigma": ("ex3_kl.py", "return -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=-1)",
                               "sigma = np.exp(logvar)\n"
                               "    return -0.5 * np.sum(1 + np.log(sigma ** 2) - mu ** 2 - sigma ** 2, axis=-1)"),
    "kl_no_sum": ("ex3_kl.py", "return -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=-1)",
                  "return -0.5 * (1 + logvar - mu ** 2 - np.exp(logvar))"),
    "kl_grad_no_half": ("ex3_kl.py", "dlogvar = 0.5 * (np.exp(logvar) - 1)", "dlogvar = np.exp(logvar) - 1"),
    "kl_grad_wrt_sigma": ("ex3_kl.py", "dlogvar = 0.5 * (np.exp(logvar) - 1)",
                          "sigma = np.exp(0.5 * logvar)\n    dlogvar = sigma - 1 / sigma"),
    "kl_grad_dmu_sign": ("ex3_kl.py", "dmu = mu", "dmu = -mu"),
    # exercise 4
    "z_variance_for_sigma": ("ex4_reparameterise.py", "return mu + sigma * eps", "return mu + np.exp(logvar) * eps"),
    "z_logvar_for_sigma": ("ex4_reparameterise.py", "return mu + sigma * eps", "return mu + logvar * eps"),
    "dlogvar_no_half": ("ex4_reparameterise.py", "dlogvar = (dz * eps).sum(axis=0) * 0.5 * sigma",
                        "dlogvar = (dz * eps).sum(axis=0) * sigma"),
    "dlogvar_is_dsigma": ("ex4_reparameterise.py", "dlogvar = (dz * eps).sum(axis=0) * 0.5 * sigma",
                          "dlogvar = np.sum(eps * dz, axis=0)"),
    "dlogvar_variance_for_sigma": ("ex4_reparameterise.py", "dlogvar = (dz * eps).sum(axis=0) * 0.5 * sigma",
                                   "dlogvar = (dz * eps).sum(axis=0) * 0.5 * sigma ** 2"),
    "dz_mean_over_samples": ("ex4_reparameterise.py",
                             "dmu = dz.sum(axis=0)\n    dlogvar = (dz * eps).sum(axis=0) * 0.5 * sigma",
                             "dmu = dz.mean(axis=0)\n    dlogvar = (dz * eps).mean(axis=0) * 0.5 * sigma"),
    "dz_no_sum_over_samples": ("ex4_reparameterise.py",
                               "dmu = dz.sum(axis=0)\n    dlogvar = (dz * eps).sum(axis=0) * 0.5 * sigma",
                               "dmu = dz\n    dlogvar = dz * eps * 0.5 * sigma"),
    "dz_first_sample_only": ("ex4_reparameterise.py",
                             "dmu = dz.sum(axis=0)\n    dlogvar = (dz * eps).sum(axis=0) * 0.5 * sigma",
                             "dmu = dz[0]\n    dlogvar = dz[0] * eps[0] * 0.5 * sigma"),
    # exercise 5
    "vae_sum_over_batch": ("ex5_vae.py", "/ (L * N)      # (L, N, D)\n", "/ L\n",
                           "dmu = dmu + dkl_dmu / N\n    dlogvar = dlogvar + dkl_dlogvar / N",
                           "dmu = dmu + dkl_dmu\n    dlogvar = dlogvar + dkl_dlogvar"),
    "vae_kl_not_over_n": ("ex5_vae.py", "dmu = dmu + dkl_dmu / N\n    dlogvar = dlogvar + dkl_dlogvar / N",
                          "dmu = dmu + dkl_dmu\n    dlogvar = dlogvar + dkl_dlogvar"),
    "vae_no_1_over_l": ("ex5_vae.py", "/ (L * N)      # (L, N, D)\n", "/ N\n"),
    "vae_one_head": ("ex5_vae.py", "da = relu_backward(c[\"h\"], dh_mu + dh_logvar)",
                     "da = relu_backward(c[\"h\"], dh_mu)"),
    "vae_kl_sign": ("ex5_vae.py", "dmu = dmu + dkl_dmu / N\n    dlogvar = dlogvar + dkl_dlogvar / N",
                    "dmu = dmu - dkl_dmu / N\n    dlogvar = dlogvar - dkl_dlogvar / N"),
    "vae_rec_sign": ("ex5_vae.py", "d_logits = -bernoulli_log_likelihood_grads", "d_logits = bernoulli_log_likelihood_grads"),
    # exercise 6
    "adam_no_bias_correction": ("ex6_adam.py", "m_hat = m / (1 - beta1 ** t)\n    v_hat = v / (1 - beta2 ** t)",
                                "m_hat, v_hat = m, v"),
    "adam_only_m_corrected": ("ex6_adam.py", "v_hat = v / (1 - beta2 ** t)", "v_hat = v"),
    "adam_no_sqrt": ("ex6_adam.py", "(np.sqrt(v_hat) + eps)", "(v_hat + eps)"),
    "adam_eps_inside_sqrt": ("ex6_adam.py", "(np.sqrt(v_hat) + eps)", "np.sqrt(v_hat + eps)"),
    "adam_ascent": ("ex6_adam.py", "w = w - lr", "w = w + lr"),
    "adam_ignores_arguments": ("ex6_adam.py", "m = beta1 * m + (1 - beta1) * g\n    v = beta2 * v + (1 - beta2) * g ** 2\n"
                               "    m_hat = m / (1 - beta1 ** t)\n    v_hat = v / (1 - beta2 ** t)\n"
                               "    w = w - lr * m_hat / (np.sqrt(v_hat) + eps)",
                               "m = 0.9 * m + 0.1 * g\n    v = 0.999 * v + 0.001 * g ** 2\n"
                               "    m_hat = m / (1 - 0.9 ** t)\n    v_hat = v / (1 - 0.999 ** t)\n"
                               "    w = w - 0.001 * m_hat / (np.sqrt(v_hat) + 1e-8)"),
    # exercise 7
    "elbo_kl_added": ("ex7_inference.py", "np.mean(bernoulli_log_likelihood(x, logits)) - kl_standard_normal",
                      "np.mean(bernoulli_log_likelihood(x, logits)) + kl_standard_normal"),
    "elbo_grad_kl_added": ("ex7_inference.py", "return elbo, dmu - dkl_dmu, dlogvar - dkl_dlogvar",
                           "return elbo, dmu + dkl_dmu, dlogvar + dkl_dlogvar"),
    "elbo_sum_over_samples": ("ex7_inference.py",
                              "elbo = np.mean(bernoulli_log_likelihood(x, logits))",
                              "L = 1\n    elbo = np.sum(bernoulli_log_likelihood(x, logits))"),
    "elbo_dlogvar_no_half": ("ex7_inference.py", "dmu, dlogvar = reparameterise_backward(dz, eps, logvar)",
                             "dmu = dz.sum(axis=0)\n    dlogvar = (dz * eps).sum(axis=0) * np.exp(0.5 * logvar)"),
    "elbo_loss_gradient": ("ex7_inference.py", "return elbo, dmu - dkl_dmu, dlogvar - dkl_dlogvar",
                           "return elbo, dkl_dmu - dmu, dkl_dlogvar - dlogvar"),
    # exercise 8
    "iwae_bound_unstable": ("ex8_iwae.py", "m = np.max(log_w)\n    return m + np.log(np.sum(np.exp(log_w - m))) - np.log(len(log_w))",
                            "return np.log(np.mean(np.exp(log_w)))"),
    "iwae_bound_no_log_k": ("ex8_iwae.py", " - np.log(len(log_w))", ""),
    "iwae_bound_is_the_elbo": ("ex8_iwae.py", "m = np.max(log_w)\n    return m + np.log(np.sum(np.exp(log_w - m))) - np.log(len(log_w))",
                               "return np.sum(log_w) / len(log_w)"),
    "weights_unstable": ("ex8_iwae.py", "w = np.exp(log_w - np.max(log_w))", "w = np.exp(log_w)"),
    "weights_uniform": ("ex8_iwae.py", "w = np.exp(log_w - np.max(log_w))\n    return w / np.sum(w)",
                        "return np.ones_like(log_w) / len(log_w)"),
    "weights_not_normalised": ("ex8_iwae.py", "return w / np.sum(w)", "return w"),
    "iwae_grad_uniform_weights": ("ex8_iwae.py", "w_tilde = normalised_weights(log_w)",
                                  "w_tilde = np.full_like(log_w, 1 / len(log_w))"),
    "iwae_grad_q_constant": ("ex8_iwae.py", "dlogvar = dlogvar + 0.5 * np.sum(w_tilde)", "pass"),
    "iwae_grad_q_through_z_only": ("ex8_iwae.py", "dlogvar = dlogvar + 0.5 * np.sum(w_tilde)",
                                   "dmu = dmu + np.sum(w_tilde[:, None] * eps / sigma, axis=0)\n"
                                   "    dlogvar = dlogvar + np.sum(w_tilde[:, None] * eps * eps, axis=0) / 2"),
    "iwae_grad_no_prior": ("ex8_iwae.py", "dz = dz - w_tilde[:, None] * z", "pass"),
}
