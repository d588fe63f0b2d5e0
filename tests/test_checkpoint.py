"""Checkpoints: exact round trip, atomic saves, refusal of pickles, architecture mismatches."""
import io
import json
import os
import pickle
import re

import numpy as np
import pytest

from scratchvae import VAE, Adam
from scratchvae import checkpoint as ckpt
from scratchvae.checkpoint import (CheckpointError, load_checkpoint, load_model, load_parameters,
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
    history = [{"epoch": 1, "step": 1, **{k: 0.1 + 0.2 for k in ckpt.HISTORY_FIELDS[2:]}}]
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
    assert loaded["model"] == model.config()


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
    with pytest.raises(CheckpointError, match="pickled Python objects.*allow_pickle=False"):
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
        monkeypatch.setattr(ckpt.os, "replace", fail)
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
    ("config.json", "[1, 2]", "config.json must be a JSON object, got a list of 2"),
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
