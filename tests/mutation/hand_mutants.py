"""Formula slips mutmut cannot make: properties (mutmut leaves decorated functions alone), module
constants (it changes code inside functions only), and the numbers that figures, tables and
commands outside the mutated modules compute.

Each entry: a name, the file, the original text (exactly once in the file), the slip, and the
default-run tests that must fail with it applied (``python tests/mutation/run.py --hand``).
The first six are the slips an independent review made and no test noticed (issue 27).
"""
CORE = ["tests/test_layers.py", "tests/test_losses.py", "tests/test_vae.py", "tests/test_optim.py",
        "tests/test_gradcheck.py"]
CHAPTERS = ["tests/chapters"]
ESCAPED = 'return text.replace("<", "\\\\u003c").replace(">", "\\\\u003e").replace("&", "\\\\u0026")'

HAND_MUTANTS = [
    # ---- the review's slips
    dict(name="compare_with_vae: the radius of the 95 % circle", file="scratchvae/chapters/autoencoder.py",
         old="radius = np.sqrt(-2 * np.log(0.05))", new="radius = np.sqrt(-2 * np.log(0.1))",
         tests=["tests/chapters/test_autoencoder.py"]),
    dict(name="vae_reconstruction_error at a sampled z, not z = mu", file="scratchvae/chapters/autoencoder.py",
         old="    mu, _ = vae.encode(x)\n    return -vae._log_likelihood(",
         new="    mu, logvar = vae.encode(x)\n    mu = mu + np.exp(0.5 * logvar) * np.random.default_rng(0)"
             ".standard_normal(mu.shape).astype(mu.dtype)\n    return -vae._log_likelihood(",
         tests=["tests/chapters/test_autoencoder.py"]),
    dict(name="Gaps.approximation_gap returns the amortisation gap", file="scratchvae/chapters/inference.py",
         old="return self.log_px - self.elbo_star", new="return self.elbo_star - self.elbo_encoder",
         tests=["tests/chapters/test_inference.py", "tests/pictures/test_plots.py"]),
    dict(name="cvae_run: the gain log p(y|x) with its sign flipped", file="scratchvae/chapters/cvae_run.py",
         old="diff = nll_vae - nll ", new="diff = nll - nll_vae ", tests=["tests/chapters/test_cvae.py"]),
    dict(name="explorer: the escaping of the embedded data removed", file="scratchvae/pictures/explore.py",
         old=ESCAPED, new="return text", tests=["tests/pictures/test_explore_data_block.py"]),
    dict(name="explorer: only </ escaped (an unclosed <!--<script> then swallows the page)",
         file="scratchvae/pictures/explore.py", old=ESCAPED, new='return text.replace("</", "<\\\\/")',
         tests=["tests/pictures/test_explore_data_block.py"]),
    dict(name="beta sweep: the radius of the 95 % circle", file="scratchvae/chapters/beta_sweep.py",
         old="CIRCLE_95 = math.sqrt(-2 * math.log(0.05))", new="CIRCLE_95 = math.sqrt(-2 * math.log(0.1))",
         tests=["tests/chapters/test_beta_sweep.py"]),
    # ---- properties
    dict(name="Gaps.amortisation_gap: ELBO(q*) - ELBO(q) turned round", file="scratchvae/chapters/inference.py",
         old="return self.elbo_star - self.elbo_encoder", new="return self.elbo_encoder - self.elbo_star",
         tests=["tests/chapters/test_inference.py"]),
    dict(name="GapOnGrid.gap: log p(x) - ELBO turned round", file="scratchvae/chapters/posterior.py",
         old="return self.log_px - self.elbo\n", new="return self.elbo - self.log_px\n",
         tests=["tests/chapters/test_posterior.py"]),
    dict(name="Grid.cell_area: h1 alone", file="scratchvae/chapters/posterior.py",
         old="return float((self.z1[1] - self.z1[0]) * (self.z2[1] - self.z2[0]))",
         new="return float(self.z1[1] - self.z1[0])", tests=["tests/chapters/test_posterior.py"]),
    dict(name="Grid.points: z1 and z2 swapped", file="scratchvae/chapters/posterior.py",
         old="np.stack([Z1.ravel(), Z2.ravel()], axis=1)", new="np.stack([Z2.ravel(), Z1.ravel()], axis=1)",
         tests=["tests/chapters/test_posterior.py"]),
    dict(name="Adam.m: beta1 for 1 - beta1", file="scratchvae/optim.py",
         old="return (1 - self.beta1) * self.m_sum", new="return self.beta1 * self.m_sum", tests=CORE),
    dict(name="Adam.v: beta2 for 1 - beta2", file="scratchvae/optim.py",
         old="return (1 - self.beta2) * self.v_sum", new="return self.beta2 * self.v_sum", tests=CORE),
    dict(name="VAE.theta: the decoder's parameters", file="scratchvae/vae.py",
         old='if k.startswith("enc.")}', new='if k.startswith("dec.")}', tests=CORE),
    dict(name="MLP.params: the bias named as the weight", file="scratchvae/layers.py",
         old='return {f"{d.name}.{k}": v for d in self.dense_layers for k, v in d.params.items()}',
         new='return {f"{d.name}.W": v for d in self.dense_layers for k, v in d.params.items()}', tests=CORE),
    # ---- module constants
    dict(name="LOG_2PI: log pi", file="scratchvae/losses.py",
         old="LOG_2PI = float(np.log(2 * np.pi))", new="LOG_2PI = float(np.log(np.pi))", tests=CORE),
    dict(name="FLUSH_MARGIN: 2^30 (moments flushed far above tiny)", file="scratchvae/optim.py",
         old="FLUSH_MARGIN = 2.0 ** 10", new="FLUSH_MARGIN = 2.0 ** 30", tests=CORE),
    dict(name="Q_SIGMAS: 4 standard deviations of q", file="scratchvae/chapters/posterior.py",
         old="Q_SIGMAS = 8.0 ", new="Q_SIGMAS = 4.0 ", tests=CHAPTERS),
    dict(name="PRIOR_RADIUS: 1 prior standard deviation", file="scratchvae/chapters/posterior.py",
         old="PRIOR_RADIUS = 5.0 ", new="PRIOR_RADIUS = 1.0 ", tests=CHAPTERS),
    dict(name="ACTIVE_THRESHOLD: 0.1", file="scratchvae/machinery/evaluate.py",
         old="ACTIVE_THRESHOLD = 0.01 ", new="ACTIVE_THRESHOLD = 0.1 ", tests=["tests/machinery/test_evaluate.py"]),
    dict(name="N_CLASSES: 9 digits", file="scratchvae/chapters/cvae.py",
         old="N_CLASSES = 10", new="N_CLASSES = 9", tests=["tests/chapters/test_cvae.py"]),
    # ---- numbers that figures and commands outside the mutated modules compute
    dict(name="figure 10: the radius of the 95 % circle", file="scratchvae/pictures/plots.py",
         old="    radius = float(np.sqrt(-2 * np.log(0.05)))                  # P(|z| < r)",
         new="    radius = float(np.sqrt(-2 * np.log(0.1)))                  # P(|z| < r)",
         tests=["tests/chapters/test_autoencoder.py", "tests/pictures/test_plots.py"]),
    dict(name="figure 11: the radius of the 95 % circle", file="scratchvae/pictures/plots.py",
         old="    radius = float(np.sqrt(-2 * np.log(0.05)))\n    column",
         new="    radius = float(np.sqrt(-2 * np.log(0.1)))\n    column", tests=["tests/chapters/test_beta_sweep.py"]),
    dict(name="figure 11: the table's D + beta R as D + R", file="scratchvae/pictures/plots.py",
         old="{distortions[i] + beta * rates[i]:11.2f}", new="{distortions[i] + rates[i]:11.2f}",
         tests=["tests/chapters/test_beta_sweep.py"]),
    dict(name="figure 9: q* drawn with exp(logvar) for exp(-logvar)", file="scratchvae/pictures/plots.py",
         old="(pts - mu_s) ** 2 * np.exp(-logvar_s)", new="(pts - mu_s) ** 2 * np.exp(logvar_s)",
         tests=["tests/pictures/test_plots.py"]),
    dict(name="cvae_run: the conditional VAE's bound without its labels", file="scratchvae/chapters/cvae_run.py",
         old="nll = importance_sampled_nll(model, x_test, args.is_k, labels=y_test,",
         new="nll = importance_sampled_nll(model, x_test, args.is_k, labels=(y_test + 1) % 10,",
         tests=["tests/chapters/test_cvae.py"]),
    dict(name="cvae_run: the gain's standard error over n, not sqrt(n)", file="scratchvae/chapters/cvae_run.py",
         old="diff.std(ddof=1) / np.sqrt(len(diff))", new="diff.std(ddof=1) / len(diff)",
         tests=["tests/chapters/test_cvae.py"]),
    dict(name="sample --digit: the model's draws of the next digit", file="scratchvae/machinery/cli.py",
         old="images = model.sample(n, args.digit, rng)", new="images = model.sample(n, (args.digit + 1) % 10, rng)",
         tests=["tests/machinery/test_cli.py"]),
]
