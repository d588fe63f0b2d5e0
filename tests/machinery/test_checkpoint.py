"""Checkpoints: exact round trip, atomic saves, refusal of pickles, architecture mismatches."""
import io
import json
import os
import pickle
import re

import numpy as np
import pytest

from scratchvae import VAE, Adam
import scratchvae.machinery.checkpoint as ckpt
import scratchvae.machinery.files as files
from scratchvae.machinery.models import kinds, model_class
from scratchvae.machinery.checkpoint import (CheckpointError, load_checkpoint, load_model, load_parameters,
                                   save_checkpoint)


def trained_state(latent=3, seed=0, steps=3):
    """A small model and Adam after a few steps, and the other things a checkpoint holds."""
    model = VAE(12, [8], latent, seed=seed)
    adam = Adam(model.flat_params, model.flat_grads, lr=1e-2)
    x = np.random.default_rng(seed).random((10, 12)).astype(np.float32)
    for _ in range(steps):
        model.loss_and_grads(x)
        adam.step()
    data_rng = np.random.default_rng(123)
    data_rng.random(7)
    rng_states = {"eps": model.rng.bit_generator.state, "data": data_rng.bit_generator.state}
    config = {"latent": latent, "hidden": [8], "data_dir": "/données ✓"}     # unicode survives
    history = [{"epoch": 1, "test_nelbo": 8.123456789012345}]
    return model, adam, config, history, rng_states


def test_round_trip_restores_everything_exactly(tmp_path):
    model, adam, config, history, rng_states = trained_state()
    history = [{"epoch": 1, "step": 1, **{k: 0.1 + 0.2 for k in VAE.history_fields[2:]}}]
    progress = {"epochs_done": 1, "step_in_epoch": 2, "global_step": 3, "seconds": 0.1 + 0.2,
                "train_seconds": 1e-300, "sums": {"n": 20, "loss": 0.1 + 0.2, "rec": 1 / 3, "kl": 2.5}}
    path = save_checkpoint(tmp_path / "run" / "checkpoint.npz", model, adam, config, history,
                           rng_states, progress)
    loaded = load_checkpoint(path)
    for name, value in model.params.items():
        assert np.array_equal(loaded["params"][name], value), name
        assert loaded["params"][name].dtype == value.dtype, name
    state = adam.state_dict()
    assert np.array_equal(loaded["optimizer"]["m_sum"], state["m_sum"])
    assert np.array_equal(loaded["optimizer"]["v_sum"], state["v_sum"])
    assert loaded["optimizer"]["t"] == 3 and loaded["optimizer"]["lr"] == 1e-2
    assert loaded["config"] == config and loaded["history"] == history
    assert loaded["progress"] == progress                 # floats survive JSON exactly
    assert loaded["rng"] == rng_states                    # 128-bit integers survive JSON exactly
    restored = np.random.default_rng()
    restored.bit_generator.state = loaded["rng"]["data"]
    original = np.random.default_rng()
    original.bit_generator.state = rng_states["data"]
    assert np.array_equal(restored.random(5), original.random(5))
    assert loaded["model"] == {"type": "vae", **model.config()}


def test_load_model_rebuilds_the_same_function(tmp_path):
    model, adam, config, history, rng_states = trained_state()
    path = save_checkpoint(tmp_path / "c.npz", model, adam, config, history, rng_states)
    again = load_model(path)
    x = np.random.default_rng(1).random((4, 12)).astype(np.float32)
    eps = np.random.default_rng(2).standard_normal((1, 4, 3)).astype(np.float32)
    assert np.array_equal(again.flat_params, model.flat_params)
    assert again.loss(x, eps) == model.loss(x, eps)
    assert np.array_equal(again.rng.standard_normal(3), model.rng.standard_normal(3))


def test_loading_never_unpickles(tmp_path):
    """A crafted .npz whose entry is a pickle that would create a file when unpickled."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    model, adam, config, history, rng_states = trained_state()
    good = save_checkpoint(tmp_path / "good.npz", model, adam, config, history, rng_states)
    with np.load(good) as npz:
        entries = {k: npz[k] for k in npz.files}
    entries["config.json"] = np.array([Payload()], dtype=object)
    evil = tmp_path / "evil.npz"
    np.savez(evil, **entries)                              # np.savez pickles object arrays
    with pytest.raises(CheckpointError, match="pickled Python objects.*never unpickles"):
        load_checkpoint(evil)
    assert not marker.exists()

    plain_pickle = tmp_path / "plain.npz"                  # a bare pickle, named like a checkpoint
    plain_pickle.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="pickled"):
        load_checkpoint(plain_pickle)
    assert not marker.exists()


def write_half_then_fail(f, arrays):
    """Stand-in for the npz writer that dies halfway through (disk full, power cut, Ctrl-C)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    f.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    raise OSError("No space left on device")


@pytest.mark.parametrize("failure", ["mid-write", "before-rename"])
def test_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, failure):
    model, adam, config, history, rng_states = trained_state(steps=1)
    path = save_checkpoint(tmp_path / "checkpoint.npz", model, adam, config, history, rng_states)
    before = path.read_bytes()
    old_theta = model.flat_params.copy()

    model.flat_params += 1.0                                     # a newer state, whose save will fail
    if failure == "mid-write":
        monkeypatch.setattr(ckpt, "_write_npz", write_half_then_fail)
    else:
        def fail(*args):
            raise OSError("rename failed")
        monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError):
        save_checkpoint(path, model, adam, config, history + [{"epoch": 2}], rng_states)
    monkeypatch.undo()

    assert path.read_bytes() == before
    loaded = load_checkpoint(path)
    assert loaded["history"] == history
    assert np.array_equal(load_model(path).flat_params, old_theta)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz"]   # no temporary file left behind


def test_a_truncated_file_is_a_clear_error(tmp_path):
    model, adam, config, history, rng_states = trained_state()
    path = save_checkpoint(tmp_path / "c.npz", model, adam, config, history, rng_states)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="c.npz"):
        load_checkpoint(path)


def test_other_files_are_refused_with_a_message(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(CheckpointError, match="not a scratchvae checkpoint"):
        load_checkpoint(tmp_path / "other.npz")
    np.save(tmp_path / "single.npy", np.arange(3))
    with pytest.raises(CheckpointError, match="single .npy array"):
        load_checkpoint(tmp_path / "single.npy")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable .npz"):
        load_checkpoint(tmp_path / "text.npz")


def test_a_directory_is_refused_with_a_hint(tmp_path):
    model, adam, config, history, rng_states = trained_state()
    save_checkpoint(tmp_path / "checkpoint.npz", model, adam, config, history, rng_states)
    with pytest.raises(CheckpointError, match=r"is a directory, not a checkpoint file; did you mean "
                                              r".*checkpoint.npz\?"):
        load_checkpoint(tmp_path)


def rewrite_entry(path, key, text):
    """The checkpoint at ``path`` with entry ``key`` replaced by the JSON text ``text``."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[key] = np.array(text)
    np.savez(path, **arrays)


@pytest.mark.parametrize("key, text, message", [
    ("config.json", "[1, 2]", "config.json must be a JSON object, got [1, 2]"),
    ("history.json", "{}", "history.json must be a JSON list of per-epoch records"),
    ("history.json", "[1]", "history.json record 1 must be a JSON object, got 1"),
    ("rng.json", '{"eps": 5}', "rng.json: 'eps' is not a valid PCG64 generator state"),
    ("rng.json", '{"eps": {"bit_generator": "PCG64", "state": "x"}}',
     "rng.json: 'eps' is not a valid PCG64 generator state"),
    ("progress.json", '"done"', "progress.json must be a JSON object, got 'done'"),
])
def test_malformed_documents_are_clear_errors(tmp_path, key, text, message):
    model, adam, config, history, rng_states = trained_state()
    path = save_checkpoint(tmp_path / "c.npz", model, adam, config, history, rng_states)
    load_checkpoint(path)                                      # well-formed before the change
    rewrite_entry(path, key, text)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path)


def test_architecture_mismatch_names_the_field(tmp_path):
    model, adam, config, history, rng_states = trained_state(latent=3)
    path = save_checkpoint(tmp_path / "c.npz", model, adam, config, history, rng_states)
    with pytest.raises(CheckpointError, match="checkpoint has latent_dim=3, model has latent_dim=2"):
        load_parameters(VAE(12, [8], 2), path)
    with pytest.raises(CheckpointError, match=r"checkpoint has hidden_dims=\[8\], model has hidden_dims=\[9\]"):
        load_parameters(VAE(12, [9], 3), path)
    with pytest.raises(CheckpointError, match="checkpoint has likelihood='bernoulli'"):
        load_parameters(VAE(12, [8], 3, likelihood="gaussian"), path)


def test_parameter_shape_mismatch_names_the_parameter(tmp_path):
    model, adam, config, history, rng_states = trained_state()
    path = save_checkpoint(tmp_path / "c.npz", model, adam, config, history, rng_states)
    checkpoint = load_checkpoint(path)
    checkpoint["params"]["enc.fc1.W"] = np.zeros((12, 5), np.float32)       # tampered
    with pytest.raises(CheckpointError, match=r"parameter enc.fc1.W: checkpoint has shape \(12, 5\), "
                                              r"model has \(12, 8\)"):
        load_parameters(VAE(12, [8], 3), checkpoint)
    del checkpoint["params"]["enc.fc1.W"]
    with pytest.raises(CheckpointError, match="the model has parameter enc.fc1.W, the checkpoint does not"):
        load_parameters(VAE(12, [8], 3), checkpoint)


def test_json_entries_are_plain_strings(tmp_path):
    """Nothing in the file needs pickle: every entry loads with allow_pickle=False."""
    model, adam, config, history, rng_states = trained_state()
    path = save_checkpoint(tmp_path / "c.npz", model, adam, config, history, rng_states)
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            assert npz[key].dtype != object, key
        assert json.loads(str(npz["config.json"])) == config


# =======================================================================================
# Hostile and damaged checkpoints, generated: every field of every document, every array
# =======================================================================================
import dataclasses
import math
import struct
import subprocess
import sys
import zlib

from hypothesis import HealthCheck, example, given, settings, strategies as st

from scratchvae.machinery.runner import ConfigError, TrainConfig, TrainingDiverged, train

FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
N_DOCUMENT_CASES, N_ARRAY_CASES, N_BYTE_CASES = 300, 150, 150       # docs/reliability.md states these


def _images(n, D=16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, D)) * 255).astype(np.uint8)


TRAIN_U8, TEST_U8 = _images(40), _images(10, seed=1)


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory):
    """A checkpoint as train() writes it (2 epochs, every document filled), and its members."""
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(hidden=[5], latent=2, batch_size=16, epochs=2, eval_batch=10, out=str(out))
    train(config, train_images=TRAIN_U8, test_images=TEST_U8, log=False)
    path = out / "checkpoint.npz"
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    load_model(load_checkpoint(path))              # unchanged, it loads: the refusals below mean something
    return path.read_bytes(), members


def _paths(doc, prefix=()):
    """Every place in a JSON document: the document itself, each field, each list item."""
    yield prefix
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield from _paths(value, prefix + (key,))


DEEP = "__deeply_nested__"
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(2**63, 2**300), st.integers(-2**300, -2**63),
    st.just(10**4000), st.floats(allow_nan=True, allow_infinity=True), st.just(float("nan")),
    st.just(float("inf")), st.just(1e308), st.just(-0.0), st.text(max_size=12), st.just("\0"),
    st.just("x" * 200_000), st.lists(st.integers(), max_size=4), st.lists(st.text(max_size=2), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3), st.just({}), st.just([]),
    st.just(DEEP))


def _dumps(doc):
    """JSON text, NaN and Infinity as Python writes them, DEEP as 100,000 nested lists."""
    return json.dumps(doc).replace(f'"{DEEP}"', "[" * 100_000 + "]" * 100_000)


def _edit(doc, path, action, value):
    """``doc`` with the place ``path`` replaced by value, deleted, or given an extra field."""
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if action == "replace":
        parent[path[-1]] = value
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[f"unknown_{len(parent)}"] = value
    else:
        parent.append(value)
    return doc


def _write(path, members):
    np.savez(path, **members)                 # object arrays are pickled: loading must refuse them


def _load_and_use(path):
    """Load; if that succeeds, everything a command does with a checkpoint must work too."""
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as e:
        assert "\n" not in str(e) and len(str(e)) < 2000, str(e)
        assert "allow_pickle" not in str(e), str(e)             # never advice to unpickle
        return None
    model = load_model(checkpoint)
    assert np.isfinite(model.flat_params).all()
    TrainConfig.from_dict(checkpoint["config"])
    json.dumps(checkpoint["history"], allow_nan=False)
    return checkpoint


@settings(max_examples=N_DOCUMENT_CASES, **FUZZ)
@given(data=st.data())
def test_any_change_to_any_document_is_loaded_whole_or_refused_in_one_line(run_checkpoint, tmp_path, data):
    _, members = run_checkpoint
    key = data.draw(st.sampled_from([f"{k}.json" for k in ckpt.JSON_ENTRIES]), label="document")
    doc = json.loads(str(members[key]))
    path = data.draw(st.sampled_from(list(_paths(doc))), label="place")
    action = data.draw(st.sampled_from(["replace", "delete", "add"] if path else ["replace"]), label="action")
    value = data.draw(HOSTILE, label="value")
    changed = dict(members)
    changed[key] = np.array(_dumps(_edit(doc, path, action, value)))
    target = tmp_path / "c.npz"
    _write(target, changed)
    checkpoint = _load_and_use(target)
    if checkpoint is not None and data.draw(st.booleans(), label="resume"):
        saved = TrainConfig.from_dict(checkpoint["config"])
        here = dataclasses.replace(saved, out=str(tmp_path / "resumed"))     # never outside tmp_path
        try:                                  # an accepted checkpoint also resumes, or says why not
            train(here, resume=target, train_images=TRAIN_U8, test_images=TEST_U8, log=False)
        except (ConfigError, CheckpointError, TrainingDiverged) as e:   # (a crafted beta can diverge)
            assert "\n" not in str(e)


ARRAY_DTYPES = ["<f4", ">f4", "<f8", "<f2", "<i4", "<i8", "|b1", "<c8", "<U3", "|S2", "|O",
                [("a", "<f4")]]


@settings(max_examples=N_ARRAY_CASES, **FUZZ)
@given(data=st.data())
def test_any_change_to_any_array_is_loaded_whole_or_refused_in_one_line(run_checkpoint, tmp_path, data):
    _, members = run_checkpoint
    arrays = sorted(k for k in members if k.startswith(("param.", "optimizer.")) and not k.endswith(".json"))
    key = data.draw(st.sampled_from(arrays), label="array")
    good = members[key]
    shape = data.draw(st.sampled_from([good.shape, good.shape[::-1], (), (0,), good.shape + (1,),
                                       (good.size + 1,), (1,) + good.shape]), label="shape")
    dtype = data.draw(st.sampled_from(ARRAY_DTYPES + [good.dtype.str] * 4), label="dtype")
    value = np.zeros(shape, dtype=np.dtype(dtype) if dtype != "|O" else object)
    if value.dtype.kind == "f" and value.size:
        source = np.resize(good, value.size).reshape(shape) if good.size else value
        value[...] = source
        bad = data.draw(st.sampled_from([None, np.nan, np.inf, -np.inf, -1.0]), label="bad value")
        if bad is not None:
            value.flat[data.draw(st.integers(0, value.size - 1), label="where")] = bad
    if data.draw(st.booleans(), label="fortran") and value.ndim == 2:
        value = np.asfortranarray(value)
    changed = {**members, key: value}
    if data.draw(st.booleans(), label="drop another member"):
        del changed[data.draw(st.sampled_from(sorted(members)), label="dropped")]
    if data.draw(st.booleans(), label="add an unknown member"):
        changed["param.extra"] = np.zeros(3, np.float32)
    target = tmp_path / "c.npz"
    _write(target, changed)
    checkpoint = _load_and_use(target)
    if checkpoint is not None:                      # then it was a harmless change, e.g. byte order
        name = key.split(".", 1)[1]
        loaded = checkpoint["params"][name] if key.startswith("param.") else checkpoint["optimizer"][name]
        assert loaded.shape == good.shape and np.isfinite(loaded).all()


@settings(max_examples=N_BYTE_CASES, **FUZZ)
@given(data=st.data())
def test_damaged_bytes_anywhere_are_refused_in_one_line(run_checkpoint, tmp_path, data):
    blob = bytearray(run_checkpoint[0])
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        where = data.draw(st.integers(0, len(blob) - 1), label="offset")
        blob[where] = data.draw(st.integers(0, 255), label="byte")
    if data.draw(st.booleans(), label="truncate"):
        del blob[data.draw(st.integers(0, len(blob) - 1), label="length"):]
    target = tmp_path / "c.npz"
    target.write_bytes(bytes(blob))
    _load_and_use(target)


@settings(max_examples=40, deadline=None)
@given(D=st.integers(1, 9), K=st.integers(1, 4), hidden=st.lists(st.integers(1, 6), max_size=3),
       likelihood=st.sampled_from(["bernoulli", "gaussian"]), kind=st.sampled_from(list(kinds())),
       n_classes=st.integers(2, 12))
def test_parameter_shapes_are_those_of_the_model(D, K, hidden, likelihood, kind, n_classes):
    """For each kind: the conditional VAE's first layers take the one-hot label too, the
    autoencoder has one encoder head; the order is the model's own (its flat_params layout)."""
    Model = model_class(kind)
    extra = {"n_classes": n_classes} if Model.conditional else {}
    model = Model(D, hidden, K, likelihood=likelihood, **extra)
    shapes = ckpt.parameter_shapes({"type": kind, **model.config()})
    assert list(shapes.items()) == [(k, v.shape) for k, v in model.params.items()]


# ------------------------------------------------------------------ the model types
TRAIN_Y, TEST_Y = np.arange(40) % 10, np.arange(10) % 10


def _train_typed(out, model, epochs=2):
    config = TrainConfig(model=model, hidden=[5], latent=2, batch_size=16, epochs=epochs, eval_batch=10,
                         out=str(out))
    return train(config, train_images=TRAIN_U8, test_images=TEST_U8, train_labels=TRAIN_Y,
                 test_labels=TEST_Y, log=False)


@pytest.fixture(scope="module", params=["autoencoder", "cvae"])
def typed_checkpoint(request, tmp_path_factory):
    """An autoencoder's and a conditional VAE's checkpoint as train() writes them, and its members."""
    out = tmp_path_factory.mktemp(request.param)
    model, _ = _train_typed(out, request.param)
    path = out / "checkpoint.npz"
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    loaded = load_model(path)
    assert type(loaded) is type(model) and np.array_equal(loaded.flat_params, model.flat_params)
    return request.param, members


@settings(max_examples=60, **FUZZ)
@given(data=st.data())
def test_any_change_to_a_typed_checkpoints_documents_is_loaded_whole_or_refused(typed_checkpoint, tmp_path, data):
    """The generated document damage of the VAE's test, on the autoencoder's and the cvae's
    checkpoints (their own history fields, rng streams and parameter shapes)."""
    kind, members = typed_checkpoint
    key = data.draw(st.sampled_from([f"{k}.json" for k in ckpt.JSON_ENTRIES]), label="document")
    doc = json.loads(str(members[key]))
    path = data.draw(st.sampled_from(list(_paths(doc))), label="place")
    action = data.draw(st.sampled_from(["replace", "delete", "add"] if path else ["replace"]), label="action")
    value = data.draw(st.one_of(HOSTILE, st.sampled_from(list(kinds()))), label="value")
    target = tmp_path / "c.npz"
    _write(target, {**members, key: np.array(_dumps(_edit(doc, path, action, value)))})
    checkpoint = _load_and_use(target)
    if checkpoint is not None and data.draw(st.booleans(), label="resume"):
        here = dataclasses.replace(TrainConfig.from_dict(checkpoint["config"]), out=str(tmp_path / "resumed"))
        try:
            train(here, resume=target, train_images=TRAIN_U8, test_images=TEST_U8, train_labels=TRAIN_Y,
                  test_labels=TEST_Y, log=False)
        except (ConfigError, CheckpointError, TrainingDiverged) as e:
            assert "\n" not in str(e)


@settings(max_examples=40, **FUZZ)
@given(data=st.data())
def test_any_change_to_a_typed_checkpoints_arrays_is_loaded_whole_or_refused(typed_checkpoint, tmp_path, data):
    kind, members = typed_checkpoint
    arrays = sorted(k for k in members if k.startswith(("param.", "optimizer.")) and not k.endswith(".json"))
    key = data.draw(st.sampled_from(arrays), label="array")
    good = members[key]
    shape = data.draw(st.sampled_from([good.shape, good.shape[::-1], (), good.shape + (1,), (good.size + 1,)]),
                      label="shape")
    value = np.resize(good, math.prod(shape)).reshape(shape) if good.size else np.zeros(shape, good.dtype)
    changed = {**members, key: value}
    if data.draw(st.booleans(), label="add a member of another type"):
        changed["param.enc.mu.W" if kind == "autoencoder" else "param.enc.z.W"] = np.zeros((5, 2), np.float32)
    target = tmp_path / "c.npz"
    _write(target, changed)
    checkpoint = _load_and_use(target)
    if checkpoint is not None:
        assert checkpoint["model"]["type"] == kind and value.shape == good.shape


def test_a_model_of_another_type_is_refused_by_name(tmp_path):
    from scratchvae.chapters.autoencoder import Autoencoder
    _train_typed(tmp_path, "autoencoder", epochs=1)
    with pytest.raises(CheckpointError, match="holds a model of type 'autoencoder', the model is of type 'vae'"):
        load_parameters(VAE(16, [5], 2), tmp_path / "checkpoint.npz")
    assert isinstance(load_model(tmp_path / "checkpoint.npz"), Autoencoder)


def test_an_old_vae_checkpoint_without_types_loads_and_resumes_bit_for_bit(tmp_path):
    """Written before the model types: model.json has no "type", config.json no "model"."""
    full, full_history = _train_typed(tmp_path / "full", "vae", epochs=2)
    _train_typed(tmp_path / "old", "vae", epochs=1)
    path = tmp_path / "old" / "checkpoint.npz"
    for key, field in (("model.json", "type"), ("config.json", "model")):
        with np.load(path, allow_pickle=False) as npz:
            doc = json.loads(str(npz[key]))
        del doc[field]
        rewrite_entry(path, key, json.dumps(doc))
    loaded = load_checkpoint(path)
    assert loaded["model"]["type"] == "vae" and type(load_model(loaded)) is VAE
    config = dataclasses.replace(TrainConfig.from_dict(loaded["config"]), epochs=2)
    resumed, history = train(config, resume=path, train_images=TRAIN_U8, test_images=TEST_U8, log=False)
    assert type(resumed) is VAE and np.array_equal(resumed.flat_params, full.flat_params)
    timing = ("img_per_s", "seconds")
    assert ([{k: v for k, v in r.items() if k not in timing} for r in history]
            == [{k: v for k, v in r.items() if k not in timing} for r in full_history])


# ---------------------------------------------------------------- memory: nothing inflates
def _zip(members):
    """A zip archive of raw members [(name, method, data, crc, size)], data already compressed."""
    local, central, offset = [], [], 0
    for name, method, data, crc, size in members:
        name = name.encode()
        header = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data),
                             size, len(name), 0) + name
        local.append(header + data)
        central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0,
                                   crc, len(data), size, len(name), 0, 0, 0, 0, 0, offset) + name)
        offset += len(header) + len(data)
    directory = b"".join(central)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory),
                      offset, 0)
    return b"".join(local) + directory + end


def _npy_header(shape, descr="<f4"):
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def _zeros_deflated(n_blocks):
    """A raw deflate stream of n_blocks x 16 MiB of zero bytes (built from one repeated block)."""
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    first = c.compress(bytes(1 << 24)) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(1 << 24)) + c.flush(zlib.Z_FULL_FLUSH)
    return first + block * (n_blocks - 1) + c.flush()


MEMORY_LIMIT_MB = 40            # peak growth of the process while refusing (docs/reliability.md)


def test_members_that_inflate_to_gigabytes_are_refused_in_little_memory(run_checkpoint, tmp_path):
    """Three crafted files of at most 10 MB whose members inflate to 2 GiB each: a parameter,
    an unknown member, a parameter whose header declares 2 GiB; each refused, and the
    process's peak memory (ru_maxrss) grows by less than MEMORY_LIMIT_MB meanwhile."""
    _, members = run_checkpoint
    gib2 = 128                                                   # blocks of 16 MiB
    stream = _zeros_deflated(gib2)
    crc = 0
    zero_block = bytes(1 << 24)
    for _ in range(gib2):
        crc = zlib.crc32(zero_block, crc)
    stored = []
    for key, value in members.items():                           # the honest members, stored
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        stored.append((f"{key}.npy", 0, buf.getvalue(), zlib.crc32(buf.getvalue()), len(buf.getvalue())))
    name = "param.enc.fc1.W.npy"
    others = [m for m in stored if m[0] != name]
    header = _npy_header(((1 << 31) // 4,))
    files = {
        "inflating_parameter": others + [(name, 8, stream, crc, 1 << 31)],
        "inflating_unknown_member": stored + [("padding.npy", 8, stream, crc, 1 << 31)],
        "header_declares_2_gib": others + [(name, 0, header, zlib.crc32(header), len(header) + (1 << 31))],
    }
    for label, entries in files.items():
        (tmp_path / f"{label}.npz").write_bytes(_zip(entries))
        assert (tmp_path / f"{label}.npz").stat().st_size < 10_000_000
    script = f"""
import resource, sys
from scratchvae.machinery.checkpoint import CheckpointError, load_checkpoint
for label in {list(files)!r}:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_checkpoint({str(tmp_path)!r} + "/" + label + ".npz")
    except CheckpointError as e:
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(label, round(grown, 1), str(e).split(": ", 1)[1][:120])
    else:
        print(label, "accepted")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(files), result.stdout
    for line in lines:
        label, grown, why = line.split(" ", 2)
        assert grown != "accepted", line
        assert float(grown) < MEMORY_LIMIT_MB, line
    assert "is compressed" in lines[0] and "is compressed" in lines[1], lines
    assert "claims 2,147,483,776 bytes, more than the file holds" in lines[2], lines[2]


def test_a_huge_integer_beta_and_raw_bytes_in_a_zip_error_stay_one_line(tmp_path):
    """Two cases the generated tests found: beta = 2**999 in model.json (NumPy's isfinite cannot
    take such an int) and zipfile errors that quote thousands of raw header bytes."""
    model = VAE(6, [4], 2, beta=2 ** 999)                  # a finite number: accepted
    assert model.beta == float(2 ** 999)
    with pytest.raises(ValueError, match="beta") as e:
        VAE(6, [4], 2, beta=2 ** 2000)                     # beyond any float: refused, shortly
    assert len(str(e.value)) < 200
    bad = tmp_path / "c.npz"
    np.savez(bad, format=np.array("scratchvae-checkpoint-1"), padding=np.zeros(3000))
    data = bytearray(bad.read_bytes())
    data[26:28] = (2500).to_bytes(2, "little")            # the first local header's name length
    bad.write_bytes(bytes(data))                          # zipfile quotes 2,500 bytes as the "name"
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


# =======================================================================================
# A checkpoint that loads also resumes: progress.json's running sums stay summable
# =======================================================================================
import signal
from contextlib import redirect_stderr

import scratchvae.machinery.runner as runner_module
from scratchvae.machinery.cli import main as cli_main


@pytest.fixture(scope="module")
def stopped_mid_epoch(tmp_path_factory):
    """A checkpoint saved by SIGINT after step 1 of epoch 2 (3 steps per epoch; 2 steps and
    another epoch to go), and its members: progress.json's sums hold 16 images."""
    out = tmp_path_factory.mktemp("stopped")
    config = TrainConfig(hidden=[5], latent=2, batch_size=16, epochs=3, eval_batch=10, out=str(out))
    real, drawn = runner_module.iterate_batches, {"n": 0}

    def batches(*args, **kwargs):
        for batch in real(*args, **kwargs):
            drawn["n"] += 1
            if drawn["n"] == 4:                               # epoch 2, step 1
                os.kill(os.getpid(), signal.SIGINT)
            yield batch
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner_module, "iterate_batches", batches)
        with pytest.raises(KeyboardInterrupt):
            train(config, train_images=TRAIN_U8, test_images=TEST_U8, log=False)
    path = out / "checkpoint.npz"
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    progress = json.loads(str(members["progress.json"]))
    assert (progress["epochs_done"], progress["step_in_epoch"], progress["sums"]["n"]) == (1, 1, 16)
    return members


def _with_progress(members, path, **changes):
    """The checkpoint with progress.json's sums (and seconds) changed, written to ``path``."""
    progress = json.loads(str(members["progress.json"]))
    for key, value in changes.items():
        (progress if key in ("seconds", "train_seconds") else progress["sums"])[key] = value
    _write(path, {**members, "progress.json": np.array(json.dumps(progress))})
    return path


@pytest.mark.parametrize("key", ["loss", "rec", "kl"])
@pytest.mark.parametrize("value", [1e308, -1e308, 1.7976931348623157e308, 1e60])
def test_sums_that_cannot_be_summed_further_are_refused_at_load(stopped_mid_epoch, run_checkpoint, tmp_path,
                                                               key, value):
    """1e308 passed as 'a finite number', and resume then crashed in write_history on inf.
    The sums of a training run are below n x 1e40 (n x 1e40 x (1 + beta) for the loss), both
    at an epoch's end (n = 0: they are 0) and mid-epoch (n = 16)."""
    bound = "3.2e\\+41" if key == "loss" else "1.6e\\+41"              # beta = 1
    for members, n in ((stopped_mid_epoch, 16), (run_checkpoint[1], 0)):
        path = _with_progress(members, tmp_path / f"c{n}.npz", **{key: value})
        with pytest.raises(CheckpointError, match=rf"progress.json sums: field '{key}' must be "
                           + ("0" if n == 0 else f"at most {bound}")):
            load_checkpoint(path)


def test_resume_of_such_a_checkpoint_is_one_line_and_exit_2(stopped_mid_epoch, tmp_path, capsys):
    path = _with_progress(stopped_mid_epoch, tmp_path / "checkpoint.npz", loss=1e308, rec=1e308, kl=1e308)
    assert cli_main(["resume", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scratchvae resume: error: ") and "sums" in err, err


SUMS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.floats(-1e3, 1e3), st.sampled_from(
    [16e40, -16e40, 16e40 * (1 + 1e-12), 2 * 16e40, 1e300, 1e307, 1e308, -1e308, 1.7976931348623157e308]))


@settings(max_examples=25, **FUZZ)
@given(loss=SUMS, rec=SUMS, kl=SUMS, huge_seconds=st.booleans())
@example(loss=1e308, rec=1e308, kl=1e308, huge_seconds=False)           # the case that crashed
def test_any_sums_that_load_also_resume_to_finite_records(stopped_mid_epoch, tmp_path, loss, rec, kl,
                                                          huge_seconds):
    """Generated: sums (and the epoch's seconds) anywhere in float64's range, near the bound and
    beyond it. Refused in one line, or loaded, resumed to the end and written as finite records."""
    changes = dict(loss=loss, rec=rec, kl=kl)
    if huge_seconds:
        changes.update(seconds=1.7976931348623157e308, train_seconds=1.7976931348623157e308)
    path = _with_progress(stopped_mid_epoch, tmp_path / "c.npz", **changes)
    try:
        load_checkpoint(path)
    except CheckpointError as e:
        assert "\n" not in str(e)
        return
    saved = TrainConfig.from_dict(load_checkpoint(path)["config"])
    here = dataclasses.replace(saved, out=str(tmp_path / "resumed"))
    _, history = train(here, resume=path, train_images=TRAIN_U8, test_images=TEST_U8, log=False,
                       overwrite=True)
    assert len(history) == 3
    assert all(math.isfinite(v) for r in history for v in r.values() if v is not None)
    json.loads((tmp_path / "resumed" / "history.json").read_text())
