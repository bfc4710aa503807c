"""Recurrent weight initialisations: identity (Le et al.'s IRNN) and orthogonal blocks exactly, the
trainer applying them from its seed, and an identity-initialised relu RNN learning adding."""

import numpy as np
import pytest

import bptt
from bptt.training.init import INITS, identity_init, initialise, orthogonal_init, random_orthogonal
from bptt.training.trainer import TrainConfig, train

CELLS = [lambda: bptt.RNN(3, 5, "relu", seed=0), lambda: bptt.RNN(3, 5, "tanh", seed=0),
         lambda: bptt.LSTM(3, 5, seed=0), lambda: bptt.GRU(3, 5, seed=0)]


def blocks(cell):
    H = cell.hidden_size
    return [cell.params["weight_hh"][g * H:(g + 1) * H] for g in range(cell.gates)]


@pytest.mark.parametrize("make", CELLS)
def test_identity_init_is_le_et_al(make):
    cell, default = make(), make()
    identity_init(cell)
    assert len(blocks(cell)) == cell.gates
    for block in blocks(cell):
        np.testing.assert_array_equal(block, np.eye(5))
    assert not cell.params["bias_ih"].any() and not cell.params["bias_hh"].any()
    np.testing.assert_array_equal(cell.params["weight_ih"], default.params["weight_ih"])  # untouched


@pytest.mark.parametrize("make", CELLS)
def test_orthogonal_init_gives_orthogonal_blocks_reproducibly(make):
    cell, again, other, default = make(), make(), make(), make()
    orthogonal_init(cell, np.random.default_rng(7))
    orthogonal_init(again, np.random.default_rng(7))
    orthogonal_init(other, np.random.default_rng(8))
    for block in blocks(cell):
        np.testing.assert_allclose(block.T @ block, np.eye(5), rtol=0, atol=1e-12)
        np.testing.assert_allclose(block @ block.T, np.eye(5), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(cell.params["weight_hh"], again.params["weight_hh"])
    assert not np.allclose(cell.params["weight_hh"], other.params["weight_hh"])
    if cell.gates > 1:  # each gate its own draw
        assert not np.allclose(blocks(cell)[0], blocks(cell)[1])
    for name in ("weight_ih", "bias_ih", "bias_hh"):
        np.testing.assert_array_equal(cell.params[name], default.params[name])


def test_random_orthogonal_is_uniform_in_sign():
    """With R's diagonal signs folded in, Q's diagonal has mean 0 (plain QR of a Gaussian biases it)."""
    rng = np.random.default_rng(0)
    diagonals = np.array([np.diag(random_orthogonal(rng, 3)) for _ in range(4000)])
    assert abs(diagonals.mean()) < 0.03  # standard error about 0.005


def test_float32_cell_keeps_its_dtype():
    cell = bptt.LSTM(2, 4, seed=0, dtype=np.float32)
    orthogonal_init(cell, np.random.default_rng(0))
    assert cell.params["weight_hh"].dtype == np.float32
    np.testing.assert_allclose(blocks(cell)[2].T @ blocks(cell)[2], np.eye(4), atol=1e-6)


def test_unknown_init_is_a_value_error():
    cell = bptt.RNN(2, 3, seed=0)
    with pytest.raises(ValueError, match=r"init must be one of \['default', 'identity', 'orthogonal'\], got 'bogus'"):
        initialise(cell, "bogus")
    with pytest.raises(ValueError, match="init must be one of"):
        TrainConfig(init="bogus").validate()
    with pytest.raises(ValueError, match="Generator"):
        initialise(cell, "orthogonal")
    assert INITS[0] == TrainConfig().init == "default"


class Stop(Exception):
    pass


def initial_weight_hh(tmp_path, name, **settings):
    """weight_hh of the step-0 checkpoint a run writes before its first update."""
    def stop(step, record):
        raise Stop

    config = TrainConfig(task="adding", hidden=4, seq_len=5, steps=3, batch_size=2, eval_size=4,
                         checkpoint_every=100, out=str(tmp_path / name), **settings)
    with pytest.raises(Stop):
        train(config, callback=stop)
    with np.load(tmp_path / name / "checkpoint.npz") as data:
        assert int(data["step"]) == 0
        return {k[len("param/cell."):]: data[k] for k in data.files if k.startswith("param/cell.")}


def test_trainer_applies_the_init_from_its_seed(tmp_path):
    identity = initial_weight_hh(tmp_path, "identity", cell="rnn-relu", init="identity")
    np.testing.assert_array_equal(identity["weight_hh"], np.eye(4))
    assert not identity["bias_ih"].any() and not identity["bias_hh"].any()

    ortho = [initial_weight_hh(tmp_path, f"o{i}", cell="gru", init="orthogonal", seed=seed)["weight_hh"]
             for i, seed in enumerate((3, 3, 4))]
    for g in range(3):
        block = ortho[0][g * 4:(g + 1) * 4]
        np.testing.assert_allclose(block.T @ block, np.eye(4), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ortho[0], ortho[1])
    assert not np.allclose(ortho[0], ortho[2])

    # "default" is the trainer's behaviour from before the setting existed: the cell's own draw
    default = initial_weight_hh(tmp_path, "default", cell="lstm", seed=5)
    cell_seed = np.random.SeedSequence(5).spawn(3)[0]
    np.testing.assert_array_equal(default["weight_hh"], bptt.LSTM(2, 4, seed=cell_seed).params["weight_hh"])


def test_identity_relu_rnn_learns_adding(tmp_path):
    config = TrainConfig(task="adding", cell="rnn-relu", init="identity", hidden=16, seq_len=10, steps=300,
                         batch_size=32, eval_size=200, eval_every=300, checkpoint_every=300, record_every=0,
                         out=str(tmp_path / "irnn"))
    summary = train(config)
    assert summary["eval_loss"] < 0.1 * summary["baseline_loss"]
