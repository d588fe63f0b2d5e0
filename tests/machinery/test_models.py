"""The model protocol: every kind of model answers for itself, and nothing else switches on its name."""
import ast
import re
from pathlib import Path

import numpy as np
import pytest

import scratchvae.machinery.models as models
from scratchvae import VAE
from scratchvae.machinery.checkpoint import load_checkpoint, load_model, parameter_shapes
from scratchvae.machinery.cli import main
from scratchvae.machinery.config import ConfigError, TrainConfig
from scratchvae.machinery.models import MODELS, kinds, model_class, objectives
from scratchvae.machinery.runner import train
from helpers import synthetic_images

PACKAGE = Path(__file__).resolve().parents[2] / "scratchvae"
MODEL_FILES = {PACKAGE / "vae.py", *(PACKAGE / "chapters" / f"{m}.py" for m in ("autoencoder", "cvae", "iwae"))}
PROTOCOL = ("kind", "title", "article", "summary", "objective", "loss_name", "variational", "conditional",
            "random_streams", "fixed_fields", "history_fields", "history_newer", "from_config",
            "parameter_shapes", "config")
IMAGES = synthetic_images(60)
TRAIN, TEST = IMAGES[:40], IMAGES[40:]
LABELS = np.arange(60) % 10


def kind_switches(source, names):
    """(line, text) of each place that compares a value with a kind's name, or keys a dict by it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operand in operands:
                elements = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                if any(isinstance(e, ast.Constant) and e.value in names for e in elements):
                    found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Dict):
            if any(isinstance(k, ast.Constant) and k.value in names for k in node.keys):
                found.append((node.lineno, ast.unparse(node)[:80]))
    return found


def test_no_module_outside_the_model_files_switches_on_a_model_kind():
    names = set(kinds())
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path not in MODEL_FILES:
            offenders += [(str(path.relative_to(PACKAGE)), *hit) for hit in kind_switches(path.read_text(), names)]
    assert offenders == []


def test_the_kind_switch_check_finds_one():
    names = {"vae", "cvae"}
    assert kind_switches("if kind == 'cvae':\n    pass\n", names) == [(1, "kind == 'cvae'")]
    assert kind_switches("ok = model in ('vae', 'x')", names)
    assert kind_switches("ARTICLES = {'vae': 'a VAE'}", names)
    assert kind_switches("if model.conditional:\n    pass\n", names) == []


@pytest.mark.parametrize("Model", MODELS, ids=lambda M: M.__name__)
def test_each_kind_declares_the_protocol_and_builds_itself(Model):
    missing = [name for name in PROTOCOL if not hasattr(Model, name)]
    assert missing == []
    config = TrainConfig(model=Model.kind, objective=Model.objective, hidden=(7,), latent=3, seed=4,
                         **{field: value for field, (value, _) in Model.fixed_fields.items()})
    model = Model.from_config(config, 36)
    assert type(model) is Model and model_class(Model.kind, Model.objective) is Model
    assert (model.input_dim, model.hidden_dims, model.latent_dim) == (36, [7], 3)
    assert list(Model.parameter_shapes({"type": Model.kind, **model.config()}).items()) == \
        [(name, value.shape) for name, value in model.params.items()]
    assert ("eps" in Model.random_streams) == hasattr(model, "rng")


@pytest.mark.parametrize("Model", MODELS, ids=lambda M: M.__name__)
def test_the_trainer_writes_the_history_fields_each_kind_declares(Model):
    config = TrainConfig(model=Model.kind, objective=Model.objective, hidden=(8,), latent=2, epochs=1,
                         batch_size=10, eval_batch=20,
                         **{field: value for field, (value, _) in Model.fixed_fields.items()})
    model, history = train(config, train_images=TRAIN, test_images=TEST, train_labels=LABELS[:40],
                           test_labels=LABELS[40:], log=False)
    assert type(model) is Model
    assert set(history[0]) == {*Model.history_fields, *Model.history_newer}


def test_what_a_kind_cannot_use_is_refused_by_the_kind():
    for Model in MODELS:
        for field, (value, why) in Model.fixed_fields.items():
            other = {"beta": 0.5, "warmup_epochs": 1.0, "n_samples": 2}[field]
            with pytest.raises(ConfigError, match=f"{field} must be {value:g} with .*{re.escape(why)}"):
                TrainConfig(model=Model.kind, objective=Model.objective, **{field: other})
    assert objectives("vae") == ("elbo", "iwae") and objectives("cvae") == ("elbo",)
    with pytest.raises(ConfigError, match="objective must be 'elbo' with model 'autoencoder'"):
        TrainConfig(model="autoencoder", objective="iwae")


class Toy(VAE):
    """A new kind of model for the test: a VAE that calls itself "toy", in its own class."""
    kind, title, article, summary = "toy", "toy VAE", "a toy VAE", "a VAE under another name (the tests)"


def test_a_new_kind_needs_its_class_and_one_registry_line(tmp_path, monkeypatch, capsys):
    """Registered in MODELS alone, a new kind trains, checkpoints, resumes, evaluates and samples
    through the same trainer and command line: nothing else names it."""
    monkeypatch.setattr(models, "MODELS", (*MODELS, Toy))
    assert "toy" in kinds()
    config = TrainConfig(model="toy", hidden=(8,), latent=2, epochs=1, batch_size=10, eval_batch=20,
                         out=str(tmp_path / "run"))
    model, _ = train(config, train_images=TRAIN, test_images=TEST, log=False)
    path = tmp_path / "run" / "checkpoint.npz"
    assert type(model) is Toy and load_checkpoint(path)["model"]["type"] == "toy"
    assert type(load_model(path)) is Toy and parameter_shapes({"type": "toy", **model.config()})
    resumed, history = train(TrainConfig(**{**config.to_dict(), "epochs": 2}), resume=path,
                             train_images=TRAIN, test_images=TEST, log=False)
    assert type(resumed) is Toy and len(history) == 2
    assert main(["sample", str(path), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert "4 images decoded" in capsys.readouterr().out
