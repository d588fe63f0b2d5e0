"""Surviving mutants that no test can tell from the original, each with the reason.

EQUIVALENT[name] = (the mutated line as mutmut writes it, why it computes the same numbers).
run.py counts a survivor as equivalent only if its change is still that line.
"""

ROUTE = ("chooses which of log1p's two routes runs (np.log1p or log(u) + (t - (u - 1)) / u), a matter "
         'of speed: both are within 3 eps of log(1 + t) (tests/test_layers.py checks each route)')
DTYPE_NONE_F64 = 'np.dtype(None) is float64, the dtype it replaces'
OUT = 'the same values written to a new array instead of into a scratch buffer (memory, not numbers)'
RESHAPE = "NumPy reads any negative size in reshape as 'the rest', as it reads -1"
NEED_DX = ("the encoder's first layer also computes d(loss)/dx of the data, which is thrown away: no "
           'gradient of a parameter changes')
DENSE_DTYPE_NONE = ('Dense(..., None) draws its weights in float64 (astype(None)); the model then copies them '
                    "into its own dtype's flat buffer, so a float32 model gets the same float32 rounding of the "
                    'same draws and a float64 model the same draws')
COPY = 'astype copies or not; nothing writes into the returned array, so the numbers are the same'
ARCH_BETA = ('the default beta of the check is only used by the autoencoder, which has no beta: 1.0 and '
             '2.0 both pass the check')
POOL = ("the size and thread name of Adam's helper pool: one task is submitted at a time, so any pool"
        ' computes the same update; the name is for debuggers')
SMALL = 'the flush mask held as floats 0.0/1.0 instead of booleans: np.putmask reads it as the same mask'
SPLIT = ('where the vector is split between the two threads, or the block size each uses: every entry '
         'is still updated exactly once by the same elementwise formula (the split slices still cover '
         '0..n without overlap)')
REL_ERROR_DTYPE = ('only one of a, b stays in its own dtype; a - b and |a| + |b| promote it to float64 with the '
                   'other')
DIVIDE = ("no model's loss_and_grads divides by zero (its logs are of numbers >= 1, its divisions by L "
          "N >= 1), so np.errstate's divide setting is never consulted")

FLOOR = 'int() of the positive number n / 40 is n // 40 (int truncates towards zero, which for n >= 0 is the floor)'
SORT_KIND_CASE = "NumPy reads a sort kind by its first letter in either case: 'STABLE' is 'stable'"
EPS_CAST = ("elbo_and_grads passes eps through model._check_eps, which casts it to the model's dtype: the same "
            'draws, rounded once to that dtype, reach the computation either way')
SAY_RESULT = "what the silent logger returns is never read: None or 0, nothing is printed"
MASS_BOUNDARY = ('only a mass of exactly 1 - 1e-6 tells < from <=; a sum of exp over a grid does not land on that '
                 'float, and either way the q is scored on a grid that holds it to 1e-6')
AE_N_SAMPLES = ('the autoencoder passes a sample count only so that the shared check of the VAE\'s arguments '
                'has one: it draws no samples, and 1 and 2 both pass the check')
SPAWN = ("child 0 of a SeedSequence is the same whatever the number of children spawned (its spawn key is "
         "(0,)), so the weights are the same draws")
FALSY = "None is falsy as False is: `if exclude_self:` takes the same branch"
MEAN_ORDER = ('the mean of the same L x N numbers taken in another order (over samples then datapoints, the '
              'other way round, or all at once: every row holds as many): the same mean, only the order of '
              'the additions differs')
N_CLASSES_DEFAULT = "CVAE's n_classes defaults to N_CLASSES, the value from_config passes"
CHUNK = ('how many samples f and grad_f get per call: the same draws in the same order (the noise is '
         'drawn up front, the reference stream chunk by chunk), so the same per-sample terms; only the '
         'grouping of a float sum, or the height of a matrix product, changes, at the last bit')
REPEAT_ONCE_MORE = ('each repeat computed again by the next iteration and written over with the same values '
                    '(time, not numbers)')
DECODE_CASTS = "decode casts z to the model's dtype itself (check_input), so the same float32 values reach the decoder"
EMPTY_F64 = "np.empty's dtype defaults to float64, the dtype it spells out"
SHUFFLE_NONE = ("iterate_batches reads shuffle only as a truth value ('if shuffle'): None, like False, keeps "
                'the images in their order and draws no permutation')
AXIS_LAST = "logsumexp's default axis is -1, which for the (N, G) array of log p(x, z_g) is axis 1"
EINSUM_CASE = ('einsum subscripts are labels: "NG,NGI,NGJ->NIJ" names the same axes, in the same roles, as '
               '"ng,ngi,ngj->nij"')
EDGE_BITS = ('edge = (a posterior total, ~1) - (its interior sum, ~1) is a multiple of 2^-53 whenever it is '
             'below 0.5, and 1e-9 is not one (1e-9 * 2^53 = 9007199.25...): edge == 1e-9 never happens, so '
             '< and <= decide alike')

EQUIVALENT = {
    'scratchvae.layers.x__numpy_runs_avx512__mutmut_1':
        ('return True', ROUTE),
    'scratchvae.layers.x__numpy_runs_avx512__mutmut_2':
        ('return bool(None)', ROUTE),
    'scratchvae.layers.x__numpy_runs_avx512__mutmut_3':
        ('return bool(__cpu_features__.get(None))', ROUTE),
    'scratchvae.layers.x__numpy_runs_avx512__mutmut_4':
        ('return bool(__cpu_features__.get("XXAVX512_SKXXX"))', ROUTE),
    'scratchvae.layers.x__numpy_runs_avx512__mutmut_5':
        ('return bool(__cpu_features__.get("avx512_skx"))', ROUTE),
    'scratchvae.layers.x_exp_no_subnormal__mutmut_10':
        ('dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(None)', DTYPE_NONE_F64),
    'scratchvae.layers.x_exp_no_subnormal__mutmut_23':
        ('return np.exp(floored, out=None)', OUT),
    'scratchvae.layers.x_exp_no_subnormal__mutmut_25':
        ('return np.exp(floored, )', OUT),
    'scratchvae.optim.xǁAdamǁ_update_block__mutmut_47':
        ('np.less(np.abs(moment, out=None), self._flush_below, out=small)', OUT),
    'scratchvae.optim.xǁAdamǁ_update_block__mutmut_49':
        ('np.less(np.abs(moment, ), self._flush_below, out=small)', OUT),
    'scratchvae.vae.xǁVAEǁ_log_px_z__mutmut_20':
        ('out = _reshape(self._decoder_forward(z.reshape(L * N, K)), (L, N, -2))', RESHAPE),
    'scratchvae.gradcheck.x_numerical_gradient__mutmut_8':
        ('flat_x, flat_grad = x.reshape(-2), grad.reshape(-1)', RESHAPE),
    'scratchvae.gradcheck.x_numerical_gradient__mutmut_11':
        ('flat_x, flat_grad = x.reshape(-1), grad.reshape(-2)', RESHAPE),
    'scratchvae.vae.xǁVAEǁloss_and_grads__mutmut_163':
        ('self.encoder.backward(dh, need_dx=None)                             # the data needs no gradient', NEED_DX),
    'scratchvae.vae.xǁVAEǁloss_and_grads__mutmut_165':
        ('self.encoder.backward(dh, )                             # the data needs no gradient', NEED_DX),
    'scratchvae.vae.xǁVAEǁloss_and_grads__mutmut_166':
        ('self.encoder.backward(dh, need_dx=True)                             # the data needs no gradient', NEED_DX),
    'scratchvae.vae.xǁVAEǁ__init____mutmut_43':
        ('self.encoder = MLP(D, hidden_dims, activation, init_rng, None, name="enc")', DENSE_DTYPE_NONE),
    'scratchvae.vae.xǁVAEǁ__init____mutmut_58':
        ('self.enc_mu = Dense(H, K, init_rng, None, name="mu")', DENSE_DTYPE_NONE),
    'scratchvae.vae.xǁVAEǁ__init____mutmut_71':
        ('self.enc_logvar = Dense(H, K, init_rng, None, name="logvar")', DENSE_DTYPE_NONE),
    'scratchvae.vae.xǁVAEǁ__init____mutmut_85':
        ('self.decoder = MLP(K, hidden_dims[::-1], activation, init_rng, None, name="dec")', DENSE_DTYPE_NONE),
    'scratchvae.vae.xǁVAEǁ__init____mutmut_105':
        ('self.dec_logits = Dense(H, D, init_rng, None, name="logits")', DENSE_DTYPE_NONE),
    'scratchvae.vae.xǁVAEǁ__init____mutmut_119':
        ('self.dec_mean = Dense(H, D, init_rng, None, name="mean")', DENSE_DTYPE_NONE),
    'scratchvae.vae.xǁVAEǁ__init____mutmut_132':
        ('self.dec_logvar = Dense(H, D, init_rng, None, name="logvar")', DENSE_DTYPE_NONE),
    'scratchvae.vae.xǁVAEǁ_check_eps__mutmut_26':
        ('return eps.astype(self.dtype, )', COPY),
    'scratchvae.vae.xǁVAEǁ_check_eps__mutmut_27':
        ('return eps.astype(self.dtype, copy=True)', COPY),
    'scratchvae.vae.xǁVAEǁ_check_x__mutmut_37':
        ('x = x.astype(self.dtype, copy=None)', COPY),
    'scratchvae.vae.xǁVAEǁ_check_x__mutmut_39':
        ('x = x.astype(self.dtype, )', COPY),
    'scratchvae.vae.xǁVAEǁ_check_x__mutmut_40':
        ('x = x.astype(self.dtype, copy=True)', COPY),
    'scratchvae.vae.x__check_architecture__mutmut_1':
        ('def x__check_architecture__mutmut_orig(input_dim, hidden_dims, latent_dim, likelihood, n_samples, dtype, beta=2.0):', ARCH_BETA),
    'scratchvae.optim.x__helper_thread__mutmut_3':
        ('_helper, _helper_pid = ThreadPoolExecutor(None, thread_name_prefix="adam-half"), os.getpid()', POOL),
    'scratchvae.optim.x__helper_thread__mutmut_4':
        ('_helper, _helper_pid = ThreadPoolExecutor(1, thread_name_prefix=None), os.getpid()', POOL),
    'scratchvae.optim.x__helper_thread__mutmut_5':
        ('_helper, _helper_pid = ThreadPoolExecutor(thread_name_prefix="adam-half"), os.getpid()', POOL),
    'scratchvae.optim.x__helper_thread__mutmut_6':
        ('_helper, _helper_pid = ThreadPoolExecutor(1, ), os.getpid()', POOL),
    'scratchvae.optim.x__helper_thread__mutmut_7':
        ('_helper, _helper_pid = ThreadPoolExecutor(2, thread_name_prefix="adam-half"), os.getpid()', POOL),
    'scratchvae.optim.x__helper_thread__mutmut_8':
        ('_helper, _helper_pid = ThreadPoolExecutor(1, thread_name_prefix="XXadam-halfXX"), os.getpid()', POOL),
    'scratchvae.optim.x__helper_thread__mutmut_9':
        ('_helper, _helper_pid = ThreadPoolExecutor(1, thread_name_prefix="ADAM-HALF"), os.getpid()', POOL),
    'scratchvae.optim.xǁAdamǁ__init____mutmut_42':
        ('self._small = np.empty(params.shape, dtype=None)', SMALL),
    'scratchvae.optim.xǁAdamǁ__init____mutmut_44':
        ('self._small = np.empty(params.shape, )', SMALL),
    'scratchvae.optim.xǁAdamǁstep__mutmut_3':
        ('if n <= 2 * STEP_BLOCK:', SPLIT),
    'scratchvae.optim.xǁAdamǁstep__mutmut_4':
        ('if n < 2 / STEP_BLOCK:', SPLIT),
    'scratchvae.optim.xǁAdamǁstep__mutmut_14':
        ('half = +(-n // (2 * STEP_BLOCK)) * STEP_BLOCK             # a whole number of blocks', SPLIT),
    'scratchvae.optim.xǁAdamǁstep__mutmut_16':
        ('half = -(+n // (2 * STEP_BLOCK)) * STEP_BLOCK             # a whole number of blocks', SPLIT),
    'scratchvae.optim.xǁAdamǁstep__mutmut_18':
        ('half = -(-n // (3 * STEP_BLOCK)) * STEP_BLOCK             # a whole number of blocks', SPLIT),
    'scratchvae.optim.xǁAdamǁstep__mutmut_29':
        ('second = _helper_thread().submit(self.update, slice(half, n), alpha_t, eps_t, )', SPLIT),
    'scratchvae.optim.xǁAdamǁstep__mutmut_31':
        ('second = _helper_thread().submit(self.update, slice(half, None), alpha_t, eps_t, STEP_BLOCK)', SPLIT),
    'scratchvae.optim.xǁAdamǁstep__mutmut_41':
        ('self.update(slice(0, half), alpha_t, eps_t, )', SPLIT),
    'scratchvae.optim.xǁAdamǁstep__mutmut_42':
        ('self.update(slice(None, half), alpha_t, eps_t, STEP_BLOCK)', SPLIT),
    'scratchvae.optim.xǁAdamǁstep__mutmut_44':
        ('self.update(slice(half), alpha_t, eps_t, STEP_BLOCK)', SPLIT),
    'scratchvae.gradcheck.x_rel_error__mutmut_3':
        ('a, b = np.asarray(a, dtype=None), np.asarray(b, dtype=np.float64)', REL_ERROR_DTYPE),
    'scratchvae.gradcheck.x_rel_error__mutmut_5':
        ('a, b = np.asarray(a, ), np.asarray(b, dtype=np.float64)', REL_ERROR_DTYPE),
    'scratchvae.gradcheck.x_rel_error__mutmut_7':
        ('a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=None)', REL_ERROR_DTYPE),
    'scratchvae.gradcheck.x_rel_error__mutmut_9':
        ('a, b = np.asarray(a, dtype=np.float64), np.asarray(b, )', REL_ERROR_DTYPE),
    'scratchvae.train.x_gradient_steps__mutmut_6':
        ('with np.errstate(over="ignore", invalid="ignore", divide=None):  # the check reports these', DIVIDE),
    'scratchvae.train.x_gradient_steps__mutmut_9':
        ('with np.errstate(over="ignore", invalid="ignore", ):  # the check reports these', DIVIDE),
    'scratchvae.vae.x_check_input__mutmut_70':
        ('a = a.astype(model.dtype, copy=None)', COPY),
    'scratchvae.vae.x_check_input__mutmut_72':
        ('a = a.astype(model.dtype, )', COPY),
    'scratchvae.vae.x_check_input__mutmut_73':
        ('a = a.astype(model.dtype, copy=True)', COPY),
    'scratchvae.chapters.inference.x_elbo_and_grads__mutmut_44':
        ('out = out.reshape(L, N, -2) if isinstance(out, np.ndarray) else tuple(o.reshape(L, N, -1) for o in out)', RESHAPE),
    'scratchvae.chapters.inference.x_elbo_and_grads__mutmut_53':
        ('out = out.reshape(L, N, -1) if isinstance(out, np.ndarray) else tuple(o.reshape(L, N, -2) for o in out)', RESHAPE),
    'scratchvae.chapters.inference.x_elbo_and_grads__mutmut_81':
        ('d_out = d_out.reshape(L * N, -2) / L', RESHAPE),
    'scratchvae.chapters.inference.x_elbo_and_grads__mutmut_91':
        ('d_out = tuple(d.reshape(L * N, -2) / L for d in d_out)', RESHAPE),
    'scratchvae.chapters.inference.x_grid_modes__mutmut_12':
        ('r = int(radius or max(1, len(gap.grid.z1) / 40))', FLOOR),
    'scratchvae.chapters.inference.x_grid_modes__mutmut_47':
        ('best = peaks[np.argsort(-values.ravel()[peaks], kind="STABLE")[:n]]', SORT_KIND_CASE),
    'scratchvae.chapters.inference.x_fit_q__mutmut_98':
        ('eps = rng.standard_normal((n_samples, N, K)).astype(None)', EPS_CAST),
    'scratchvae.chapters.inference.x_gaps_on_grid__mutmut_4':
        ('say = log or (lambda text: 0)', SAY_RESULT),
    'scratchvae.chapters.inference.x_gaps_on_grid__mutmut_72':
        ('if mass[r] <= 1 - 1e-6:                                        # not held: a grid of its own', MASS_BOUNDARY),
    'scratchvae.chapters.autoencoder.x_empty_prior_fraction__mutmut_50':
        ('return float(np.mean(nearest(z_prior, codes, None) > r))', FALSY),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁ__init____mutmut_109':
        ('self.dec_heads = [Dense(H, D, init_rng, dtype, name="mean"), Dense(H, D, init_rng, None, name="logvar")]', DENSE_DTYPE_NONE),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁ__init____mutmut_19':
        ('hidden_dims, dtype = _check_architecture(input_dim, hidden_dims, latent_dim, likelihood, 2, dtype)', AE_N_SAMPLES),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁ__init____mutmut_28':
        ('init_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])   # as VAE(seed=seed)', SPAWN),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁ__init____mutmut_36':
        ('self.encoder = MLP(D, hidden_dims, activation, init_rng, None, name="enc")', DENSE_DTYPE_NONE),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁ__init____mutmut_50':
        ('self.enc_z = Dense(self.encoder.out_dim, K, init_rng, None, name="z")        # one head: z itself', DENSE_DTYPE_NONE),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁ__init____mutmut_64':
        ('self.decoder = MLP(K, hidden_dims[::-1], activation, init_rng, None, name="dec")', DENSE_DTYPE_NONE),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁ__init____mutmut_84':
        ('self.dec_heads = [Dense(H, D, init_rng, None, name="logits")]', DENSE_DTYPE_NONE),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁ__init____mutmut_97':
        ('self.dec_heads = [Dense(H, D, init_rng, None, name="mean"), Dense(H, D, init_rng, dtype, name="logvar")]', DENSE_DTYPE_NONE),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁloss_and_grads__mutmut_65':
        ('self.encoder.backward(dh, need_dx=None)', NEED_DX),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁloss_and_grads__mutmut_67':
        ('self.encoder.backward(dh, )', NEED_DX),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁloss_and_grads__mutmut_68':
        ('self.encoder.backward(dh, need_dx=True)', NEED_DX),
    'scratchvae.chapters.autoencoder.xǁAutoencoderǁsample__mutmut_8':
        ('return self.decode_mean(_need_generator(rng).standard_normal((n, self.latent_dim)).astype(None))', DECODE_CASTS),
    'scratchvae.chapters.iwae.xǁIWAEǁloss_and_grads__mutmut_109':
        ('d_out = _scale(d_out, -a[..., None], (k * N, -2))        # d loss / d(decoder outputs)', RESHAPE),
    'scratchvae.chapters.iwae.xǁIWAEǁloss_and_grads__mutmut_162':
        ('self.encoder.backward(dh, need_dx=None)', NEED_DX),
    'scratchvae.chapters.iwae.xǁIWAEǁloss_and_grads__mutmut_164':
        ('self.encoder.backward(dh, )', NEED_DX),
    'scratchvae.chapters.iwae.xǁIWAEǁloss_and_grads__mutmut_165':
        ('self.encoder.backward(dh, need_dx=True)', NEED_DX),
    'scratchvae.chapters.iwae.xǁIWAEǁloss_and_grads__mutmut_168':
        ('rec, kl = -log_px_z.mean(axis=None), (log_qz_x - log_pz).mean(axis=0)', MEAN_ORDER),
    'scratchvae.chapters.iwae.xǁIWAEǁloss_and_grads__mutmut_169':
        ('rec, kl = -log_px_z.mean(axis=1), (log_qz_x - log_pz).mean(axis=0)', MEAN_ORDER),
    'scratchvae.chapters.iwae.xǁIWAEǁloss_and_grads__mutmut_170':
        ('rec, kl = -log_px_z.mean(axis=0), (log_qz_x - log_pz).mean(axis=None)', MEAN_ORDER),
    'scratchvae.chapters.iwae.xǁIWAEǁloss_and_grads__mutmut_172':
        ('rec, kl = -log_px_z.mean(axis=0), (log_qz_x - log_pz).mean(axis=1)', MEAN_ORDER),
    'scratchvae.chapters.iwae.xǁIWAEǁloss_and_grads__mutmut_42':
        ('out = _reshape(out, (k, N, -2))', RESHAPE),
    'scratchvae.chapters.cvae.xǁCVAEǁ__init____mutmut_118':
        ('self.dec_logits = Dense(H, D, init_rng, None, name="logits")', DENSE_DTYPE_NONE),
    'scratchvae.chapters.cvae.xǁCVAEǁ__init____mutmut_132':
        ('self.dec_mean = Dense(H, D, init_rng, None, name="mean")', DENSE_DTYPE_NONE),
    'scratchvae.chapters.cvae.xǁCVAEǁ__init____mutmut_145':
        ('self.dec_logvar = Dense(H, D, init_rng, None, name="logvar")', DENSE_DTYPE_NONE),
    'scratchvae.chapters.cvae.xǁCVAEǁ__init____mutmut_54':
        ('self.encoder = MLP(D + C, hidden_dims, activation, init_rng, None, name="enc")   # q(z | x, y)', DENSE_DTYPE_NONE),
    'scratchvae.chapters.cvae.xǁCVAEǁ__init____mutmut_70':
        ('self.enc_mu = Dense(H, K, init_rng, None, name="mu")', DENSE_DTYPE_NONE),
    'scratchvae.chapters.cvae.xǁCVAEǁ__init____mutmut_83':
        ('self.enc_logvar = Dense(H, K, init_rng, None, name="logvar")', DENSE_DTYPE_NONE),
    'scratchvae.chapters.cvae.xǁCVAEǁ__init____mutmut_97':
        ('self.decoder = MLP(K + C, hidden_dims[::-1], activation, init_rng, None, name="dec")  # p(x | z, y)', DENSE_DTYPE_NONE),
    'scratchvae.chapters.cvae.xǁCVAEǁ_log_px_zy__mutmut_32':
        ('out = _reshape(self._decode(z.reshape(L * N, K), np.tile(self.one_hot(y, N), (L, 1))), (L, N, -2))', RESHAPE),
    'scratchvae.chapters.cvae.xǁCVAEǁfrom_config__mutmut_6':
        ('return super().from_config(config, input_dim, )', N_CLASSES_DEFAULT),
    'scratchvae.chapters.cvae.xǁCVAEǁloss_and_grads__mutmut_100':
        ('d_out = (tuple((scale * d).reshape(L * N, -2) for d in d_out) if isinstance(d_out, tuple)', RESHAPE),
    'scratchvae.chapters.cvae.xǁCVAEǁloss_and_grads__mutmut_108':
        ('else (scale * d_out).reshape(L * N, -2))', RESHAPE),
    'scratchvae.chapters.cvae.xǁCVAEǁloss_and_grads__mutmut_118':
        ('dzy = self._decoder_backward(d_out).reshape(L, N, -2)                  # (L, N, K + C)', RESHAPE),
    'scratchvae.chapters.cvae.xǁCVAEǁloss_and_grads__mutmut_146':
        ('self.encoder.backward(dh, need_dx=None)', NEED_DX),
    'scratchvae.chapters.cvae.xǁCVAEǁloss_and_grads__mutmut_148':
        ('self.encoder.backward(dh, )', NEED_DX),
    'scratchvae.chapters.cvae.xǁCVAEǁloss_and_grads__mutmut_149':
        ('self.encoder.backward(dh, need_dx=True)', NEED_DX),
    'scratchvae.chapters.cvae.xǁCVAEǁloss_and_grads__mutmut_55':
        ('out = _reshape(self._decoder_forward(zy.reshape(L * N, -2)), (L, N, -1))  # p sees [z, y]', RESHAPE),
    'scratchvae.chapters.cvae.xǁCVAEǁloss_and_grads__mutmut_57':
        ('out = _reshape(self._decoder_forward(zy.reshape(L * N, -1)), (L, N, -2))  # p sees [z, y]', RESHAPE),
    'scratchvae.chapters.cvae.xǁCVAEǁloss_and_grads__mutmut_66':
        ('rec = -np.mean(log_px_z, axis=None)                                       # (N,)', MEAN_ORDER),
    'scratchvae.chapters.cvae.xǁCVAEǁloss_and_grads__mutmut_68':
        ('rec = -np.mean(log_px_z, )                                       # (N,)', MEAN_ORDER),
    'scratchvae.chapters.estimators.x_compare_estimators__mutmut_2':
        ('chunk=10001):', CHUNK),
    'scratchvae.chapters.estimators.x_compare_estimators__mutmut_51':
        ('step = max(2, chunk // S)                                         # repeats per call', CHUNK),
    'scratchvae.chapters.estimators.x_compare_estimators__mutmut_58':
        ('for r in range(0, R, ):', REPEAT_ONCE_MORE),
    'scratchvae.chapters.estimators.x_compare_estimators__mutmut_67':
        ("flat = e.reshape(-2, *mu.shape)                               # (r' S, N, K)", RESHAPE),
    'scratchvae.chapters.estimators.x_decoder_log_likelihood__mutmut_21':
        ('return model._log_likelihood(x, _reshape(out, (S, N, -2)))              # (S, N)', RESHAPE),
    'scratchvae.chapters.estimators.x_decoder_log_likelihood__mutmut_42':
        ('d_out = model._log_likelihood_grads(x, _reshape(out, (S, N, -2)))  # d log p / d out', RESHAPE),
    'scratchvae.chapters.estimators.x_decoder_log_likelihood__mutmut_51':
        ('dz = model._decoder_backward(_reshape(d_out, (S * N, -2)))         # (S*N, K)', RESHAPE),
    'scratchvae.chapters.estimators.x_decoder_log_likelihood__mutmut_6':
        ('out = model.decode(z.reshape(S * N, K).astype(None))', DECODE_CASTS),
    'scratchvae.machinery.evaluate.x_evaluate_nelbo__mutmut_73':
        ('means.append(q[0].astype(None))                      # E_q[z] = mu, for active_units', DTYPE_NONE_F64),
    'scratchvae.machinery.evaluate.x_importance_sampled_nll__mutmut_37':
        ('nll = np.empty(N, dtype=None)', DTYPE_NONE_F64),
    'scratchvae.machinery.evaluate.x_importance_sampled_nll__mutmut_39':
        ('nll = np.empty(N, )', EMPTY_F64),
    'scratchvae.machinery.evaluate.x_importance_sampled_nll__mutmut_88':
        ('else log_weights(xb, eps, q)).astype(None)', DTYPE_NONE_F64),
    'scratchvae.machinery.evaluate.x_evaluate_nelbo__mutmut_52':
        ('batches = iterate_batches(images_u8, batch_size, binarize_rng, binarize=binarize, shuffle=None,', SHUFFLE_NONE),
    'scratchvae.machinery.evaluate.x_evaluate_reconstruction__mutmut_31':
        ('for x in iterate_batches(images_u8, batch_size, binarize_rng, binarize=binarize, shuffle=None):', SHUFFLE_NONE),
    'scratchvae.machinery.evaluate.x_evaluate__mutmut_148':
        ('binarize=binarize, shuffle=None)))', SHUFFLE_NONE),
    'scratchvae.chapters.beta_sweep.x_measure__mutmut_22':
        ('binarize=binarize, shuffle=None))          # pixels / 255, or 0/1 draws', SHUFFLE_NONE),
    'scratchvae.chapters.beta_sweep.x_measure__mutmut_36':
        ('codes = model.encode(x)[0].astype(None)                        # E_q[z] = mu', DTYPE_NONE_F64),
    'scratchvae.chapters.posterior.x_variational_gap__mutmut_16':
        ('log_px = logsumexp(log_joint, ) + np.log(area)               # (N,)', AXIS_LAST),
    'scratchvae.chapters.posterior.x_variational_gap__mutmut_22':
        ('mu, logvar = (a.astype(None) for a in model.encode(x))       # (N, 2) each', DTYPE_NONE_F64),
    'scratchvae.chapters.posterior.x_variational_gap__mutmut_64':
        ('posterior_mass = exp_no_subnormal(log_posterior + np.log(area)).reshape(-2, *grid.shape)', RESHAPE),
    'scratchvae.chapters.posterior.x_posterior_window__mutmut_6':
        ('mu, logvar = (a.astype(None) for a in model.encode(x))', DTYPE_NONE_F64),
    'scratchvae.chapters.posterior.x_posterior_window__mutmut_44':
        ('log_post = log_joint - logsumexp(log_joint, )[:, None]', AXIS_LAST),
    'scratchvae.chapters.posterior.x_posterior_window__mutmut_52':
        ('mass = exp_no_subnormal(log_post).reshape(-2, *coarse.shape)', RESHAPE),
    'scratchvae.chapters.posterior.x_posterior_window__mutmut_69':
        ('if np.all(edge <= 1e-9) or radius >= max_radius:', EDGE_BITS),
    'scratchvae.chapters.posterior.xǁGapOnGridǁposterior_moments__mutmut_17':
        ('return mean, np.einsum("NG,NGI,NGJ->NIJ", mass, d, d)', EINSUM_CASE),
}
