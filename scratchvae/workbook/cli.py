"""The `scratchvae workbook` commands: start a workbook, check it, train with it.

    scratchvae workbook start WORKBOOK          copy the eight blank exercises into WORKBOOK
    scratchvae workbook check WORKBOOK [N]      check every exercise (or exercise N) and say why
    scratchvae workbook train WORKBOOK          train the demo's VAE with your functions, beside scratchvae's

machinery/cli.py hands its `workbook` command to ``add_workbook_commands``. Exit codes: 0 every
exercise checked passed (train: your run finished); 1 not yet (train: your code raised, or its
loss became inf or nan); 2 a bad argument or workbook directory (one line on stderr).
"""
import argparse
import sys
from pathlib import Path

from ..machinery.config import ConfigError, TrainConfig
from ..machinery.data import add_data_arguments, load
from ..machinery.files import write_text_atomic
from .checker import Checker, LoadError, describe_exception, is_blank, learner_modules, wrap
from .checks import EXERCISES
from .training import LearnerFailed, Own, plot_runs, run

EXERCISE_DIR = Path(__file__).resolve().parent / "exercises"
MODULES = [e.module for e in EXERCISES]
EXIT_NOT_YET, EXIT_USAGE = 1, 2
TRAIN_DEFAULTS = {"train_split": "train[:10000]", "test_split": "test[:1000]"}


def add_workbook_commands(commands):
    """Add `workbook` and its three commands to the `scratchvae` command's sub-parsers."""
    p = commands.add_parser("workbook", help="write the backward passes yourself: exercises, a checker "
                            "that names your mistake, and training with your own code",
                            description="A workbook of eight exercises in the lecture's order: blank "
                            "functions to write (each backward pass of the VAE, Adam, the ELBO's gradient "
                            "for one datapoint, the IWAE's weights), a checker that compares them with "
                            "finite differences and names the classic mistakes, and a training run with "
                            "your functions beside scratchvae's. docs/workbook.md explains it.")
    sub = p.add_subparsers(dest="workbook_command", required=True, metavar="COMMAND")

    s = sub.add_parser("start", help="copy the blank exercises into WORKBOOK (never overwrites a file)",
                       description="Copy the eight blank exercise files into WORKBOOK (created if "
                       "needed). A file that is already there is kept as it is, so starting again "
                       "only puts back the files you deleted.")
    s.add_argument("workbook", type=Path, metavar="WORKBOOK", help="the workbook's directory")
    s.set_defaults(run=start, command_parser=s)

    c = sub.add_parser("check", help="check your functions and say what is wrong, and why",
                       description="Check each exercise of WORKBOOK (or only EXERCISE): every "
                       "function's outputs against float64 finite differences (or an exact formula), "
                       "their shapes, and their dtype with float32 inputs; a wrong one is compared "
                       "with a catalogue of classic mistakes, whose hint is shown. Exit code 0 only "
                       "when every exercise checked passes.")
    c.add_argument("workbook", type=Path, metavar="WORKBOOK", help="the workbook's directory")
    c.add_argument("exercise", nargs="?", type=exercise_arg, metavar="EXERCISE",
                   help="1-8, or a file name such as ex3_kl (default: every exercise)")
    c.set_defaults(run=check, command_parser=c)

    t = sub.add_parser("train", help="train the demo's VAE with your functions, beside scratchvae's own",
                       description="Train the demo's VAE (one hidden layer of ReLUs, Bernoulli "
                       "decoder) twice from the same start, on the same batches and noise: with "
                       "scratchvae's functions, then with yours (exercise 5's vae_forward and "
                       "vae_backward, exercise 6's adam_step; scratchvae's own where yours are not "
                       "written). Both are measured by scratchvae's test negative ELBO after every "
                       "epoch, and OUT gets their loss curves side by side.")
    t.add_argument("workbook", type=Path, metavar="WORKBOOK", help="the workbook's directory")
    add_data_arguments(t)
    t.set_defaults(**TRAIN_DEFAULTS)
    for action in t._actions:                          # argparse has no public API for this
        if action.dest in TRAIN_DEFAULTS:
            action.help += f" (default: {TRAIN_DEFAULTS[action.dest]})"
    d = TrainConfig()
    model = t.add_argument_group("model and training (the demo's, on fewer images)")
    model.add_argument("--hidden", type=positive_int, default=d.hidden[0], metavar="H",
                       help=f"hidden units of the encoder and of the decoder (default: {d.hidden[0]})")
    model.add_argument("--latent", type=positive_int, default=d.latent, metavar="K",
                       help=f"K, the dimension of z (default: {d.latent})")
    model.add_argument("--epochs", type=positive_int, default=3, help="passes over the training split (default: 3)")
    model.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                       help=f"images per step (default: {d.batch_size})")
    model.add_argument("--lr", type=positive_float, default=d.lr, help=f"Adam's learning rate (default: {d.lr})")
    model.add_argument("--seed", type=nonnegative_int, default=d.seed, help=f"seed of everything (default: {d.seed})")
    t.add_argument("--out", type=Path, default=None, metavar="PNG",
                   help="where to draw the two runs (default: WORKBOOK/train.png)")
    t.set_defaults(run=train, command_parser=t)
    return p


# ------------------------------------------------------------------ argument types
def _integer(text, ok, what):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text):
    return _integer(text, lambda v: v >= 1, "a positive integer")


def nonnegative_int(text):
    return _integer(text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def exercise_arg(text):
    """'3', 'ex3', 'ex3_kl' or 'ex3_kl.py' -> the Exercise."""
    name = text.strip().removesuffix(".py")
    for e in EXERCISES:
        if name in (str(e.number), f"ex{e.number}", e.module):
            return e
    raise argparse.ArgumentTypeError(f"expected an exercise 1-{len(EXERCISES)} or a file name such as "
                                     f"{EXERCISES[2].module}, got {text!r}")


def workbook_problem(directory):
    """Why ``directory`` is not a workbook to check or train (None if it is one)."""
    if not directory.exists():
        return f"{directory} does not exist: start a workbook there with `scratchvae workbook start {directory}`"
    if not directory.is_dir():
        return f"{directory} is not a directory"
    if not any((directory / e.file).is_file() for e in EXERCISES):
        return (f"{directory} holds none of the workbook's files ({EXERCISES[0].file} ... {EXERCISES[-1].file}): "
                f"start one with `scratchvae workbook start {directory}`")
    return None


# ------------------------------------------------------------------ start
def start(args, parser):
    directory = args.workbook
    if directory.exists() and not directory.is_dir():
        parser.error(f"{directory} exists and is not a directory")
    written, kept = [], []
    for e in EXERCISES:
        target = directory / e.file
        if target.exists():
            kept.append(e)
            continue
        write_text_atomic(target, (EXERCISE_DIR / e.file).read_text(encoding="utf-8"))
        written.append(e)
    width = max(len(e.file) for e in EXERCISES) + 2
    if written:
        print(f"wrote {len(written)} exercise file{'s' * (len(written) > 1)} into {directory}:")
        for e in written:
            print(f"  {e.file:{width}s}exercise {e.number}: {e.title}")
    if kept:
        print(f"kept your {', '.join(e.file for e in kept)} (start never overwrites a file)")
    first = next((e for e in EXERCISES if e in written), EXERCISES[0])
    print(f"open {directory / first.file}, write the functions whose body says "
          f"NotImplementedError(\"write me\"), then: scratchvae workbook check {directory} {first.number}")
    return 0


# ------------------------------------------------------------------ check
def check(args, parser):
    directory = args.workbook
    problem = workbook_problem(directory)
    if problem:
        parser.error(problem)
    chosen = [args.exercise] if args.exercise else list(EXERCISES)
    passed = []
    with learner_modules(directory, MODULES) as load_module:
        checker = Checker(directory, EXERCISES, load_module)
        for e in chosen:
            if e is not chosen[0]:
                print()
            print(f"exercise {e.number} of {len(EXERCISES)} ({e.file}): {e.title}")
            if not (directory / e.file).is_file():
                print(f"  {e.file} is missing: `scratchvae workbook start {directory}` puts the blank back")
                print(f"exercise {e.number}: not passed (no file)")
                continue
            verdict = print_results(e, checker.check_exercise(e))
            print(f"exercise {e.number}: {verdict}")
            if verdict == "passed":
                passed.append(e)
    if len(chosen) > 1:
        print()
        left = [e for e in chosen if e not in passed]
        if left:
            print(f"{len(passed)} of {len(chosen)} exercises passed; next: exercise {left[0].number} ({left[0].file})")
        else:
            print(f"all {len(chosen)} exercises passed: train the VAE with your own code, "
                  f"`scratchvae workbook train {directory}`")
    return 0 if len(passed) == len(chosen) else EXIT_NOT_YET


def print_results(exercise, results):
    """Print one exercise's function lines; return its verdict ('passed', 'not written yet', ...)."""
    if isinstance(results, str):                         # the file does not load
        print(wrap(results, "  "))
        return "not passed (the file does not load)"
    own = [r for r in results if not any(f.given and f.name == r.name for f in exercise.functions)]
    if all(r.status == "not written" for r in own):
        return "not written yet"
    width = max(len(r.name) for r in results) + 3
    for r in results:
        status = {"right": "right", "given": "right (written for you)", "not written": "not written yet",
                  "wrong": "wrong"}[r.status]
        print(f"  {r.name:{width}s}{status}")
        for line in r.lines:
            print(wrap(line, "      "))
    right = sum(r.right for r in own)
    if right == len(own) and all(r.right for r in results):
        return "passed"
    return f"not passed ({right} of {len(own)} function{'s' * (len(own) > 1)} right)"


# ------------------------------------------------------------------ train
def train(args, parser):
    directory = args.workbook
    problem = workbook_problem(directory)
    if problem:
        parser.error(problem)
    try:
        config = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, train_split=args.train_split,
                             test_split=args.test_split, binarize=args.binarize, download=args.download,
                             hidden=(args.hidden,), latent=args.latent, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    except ConfigError as e:
        parser.error(str(e))
    out = args.out if args.out is not None else directory / "train.png"
    if out.suffix.lower() != ".png":
        parser.error(f"--out must name a .png file, got {str(out)!r}")
    train_split = load(config.dataset, config.train_split, config.data_dir, config.download)
    test_split = load(config.dataset, config.test_split, config.data_dir, config.download)
    try:
        return train_with(directory, config, train_split.images, test_split.images, out, parser,
                          what=f"{config.dataset} {config.train_split} (test: {config.test_split})")
    except MemoryError:
        parser.error("not enough memory: use a smaller --hidden, --batch-size or --train-split")


def train_with(directory, config, train_images, test_images, out, parser, what="the given images"):
    """The body of `workbook train` on given uint8 images (N, D): both runs, the figure, the verdict."""
    with learner_modules(directory, MODULES) as load_module:
        checker = Checker(directory, EXERCISES, load_module)
        try:
            own, notes = own_functions(checker, load_module)
        except LoadError as e:
            parser.error(f"{e.report}; `scratchvae workbook check {directory}` says more")
        if own.vae_backward is None and own.adam_step is None:
            parser.error("nothing of yours to train with yet: write exercise 5 (vae_backward) or "
                         f"6 (adam_step) first, and check it: scratchvae workbook check {directory} 5")
        print(f"training the VAE {train_images.shape[1]}-{config.hidden[0]}-{config.latent} for "
              f"{config.epochs} epoch{'s' * (config.epochs > 1)} on {len(train_images):,} images of {what}, "
              f"twice, from the same start: with scratchvae's functions, then with")
        for line in notes:
            print(wrap(line, "  "))
        reference = run(config, train_images, test_images, None, "scratchvae's", progress=say_epoch(config))
        try:
            yours = run(config, train_images, test_images, own, "yours", progress=say_epoch(config))
        except LearnerFailed as e:
            yours = e.run
            yours.failure = (f"epoch {e.epoch}, step {e.step}: your code raised "
                             f"{describe_exception(e.exc, directory)}")
    plot_runs(yours, reference, out, title=f"your functions (red) beside scratchvae's (blue): {what}")
    print(verdict(yours, reference))
    print(f"wrote {out}: the loss of every step, and the test negative ELBO of every epoch, of both runs")
    return 0 if yours.failure is None else EXIT_NOT_YET


def own_functions(checker, load_module):
    """The learner's functions to train with (Own), and a line for each saying whose it is.

    A blank piece of exercises 1-4 that exercise 5 calls is replaced, in every loaded file, by
    scratchvae's own, so that the rest of the learner's code can train; then exercise 5 is
    judged with those pieces in place.
    """
    vae_ex, adam_ex = EXERCISES[4], EXERCISES[5]
    directory, own, notes = Path(checker.directory), Own(), []
    if (directory / vae_ex.file).is_file():
        module = defining(load_module(vae_ex.module), vae_ex)
        if not is_blank(module.vae_backward):
            pieces = {(e.number, f.name): (e, f) for fn in vae_ex.functions
                      for e, f in checker.pieces(vae_ex, fn, module) if e is not vae_ex}
            piece_notes = [whose(checker, *pieces[key], load_module) for key in sorted(pieces)]
            backward = Checker(directory, EXERCISES, load_module).check_exercise(vae_ex)[1]   # pieces in place
            own.vae_forward, own.vae_backward = module.vae_forward, module.vae_backward
            notes += [f"your vae_forward and vae_backward (exercise 5: {judged(backward)})", *piece_notes]
    if own.vae_backward is None:
        notes.append("scratchvae's VAE.loss_and_grads (exercise 5's vae_backward is not written yet)")
    if (directory / adam_ex.file).is_file():
        module = defining(load_module(adam_ex.module), adam_ex)
        if not is_blank(module.adam_step):
            own.adam_step = module.adam_step
            notes.append(f"your adam_step (exercise 6: {judged(checker.check_exercise(adam_ex)[0])})")
    if own.adam_step is None:
        notes.append("scratchvae's Adam (exercise 6's adam_step is not written yet)")
    return own, notes


def defining(module, exercise):
    """``module``, if it defines every function of ``exercise`` (else a LoadError saying which it lacks)."""
    for function in exercise.functions:
        if not callable(getattr(module, function.name, None)):
            raise LoadError(f"{exercise.file} defines no function {function.name} (to get the blank back, "
                            f"rename {exercise.file} and run scratchvae workbook start again)")
    return module


def whose(checker, exercise, function, load_module):
    """'your relu_backward (exercise 1: passes its check)', or scratchvae's in place of a blank."""
    module = load_module(exercise.module)
    result = checker.check_function(exercise, function, module)
    if result.status != "not written":
        return f"your {function.name} (exercise {exercise.number}: {judged(result)})"
    blank = getattr(module, function.name)
    for name in MODULES:
        try:
            loaded = load_module(name) if (Path(checker.directory) / f"{name}.py").is_file() else None
        except LoadError:                                  # a file training does not use
            continue
        for attribute, value in list(vars(loaded or object()).items()):
            if value is blank:
                setattr(loaded, attribute, function.reference)
    return f"scratchvae's {function.name} (yours, exercise {exercise.number}, is not written yet)"


def judged(result):
    return "passes its check" if result.right else "does NOT pass its check: expect a worse curve"


def say_epoch(config):
    def progress(run_, seconds):
        e = run_.epochs[-1]
        print(f"  {run_.label:13s} epoch {e['epoch']}/{config.epochs}: train loss {e['train_loss']:.3f}, "
              f"test negative ELBO {e['test_nelbo']:.3f} nats ({seconds:.0f} s)", flush=True)
    return progress


def verdict(yours, reference):
    """One line comparing the two runs' last test negative ELBO (or saying why yours stopped)."""
    if yours.failure is not None:
        return f"your run stopped in {yours.failure}"
    a, b = yours.epochs[-1]["test_nelbo"], reference.epochs[-1]["test_nelbo"]
    epochs = yours.epochs[-1]["epoch"]
    if abs(a - b) < 0.005:
        how = "the same as scratchvae's"
    elif a > b:
        how = f"{a - b:.2f} nats worse than scratchvae's: a slip that still trains shows here"
    else:
        how = (f"{b - a:.2f} nats better than scratchvae's on this run (a slip can train faster "
               f"for a while; whether it is right is what `scratchvae workbook check` says)")
    return (f"after {epochs} epoch{'s' * (epochs != 1)} the test negative ELBO of your run is {a:.3f} nats, scratchvae's "
            f"{b:.3f}: {how}")
