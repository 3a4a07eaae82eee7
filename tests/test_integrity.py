"""No code from files, no silent corruption (issue 15).

Every loader of something a user passes refuses a malicious pickle without running it (the
payload would create a file; the file must not exist). Checkpoints carry a checksum and are
range-checked on resume like saved models; temporary files of killed writes are removed.
"""

import json
import pickle

import numpy as np
import pytest
import torch

import pyro_ssl
from pyro_ssl.data import Corpus, Vocabulary, load_corpus
from pyro_ssl.data.ondisk import OnDiskCorpus, write_ondisk
from pyro_ssl.io import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint

DOCS = [[0, 1, 2, 3, 1], [3, 2, 1], [1, 1, 0, 2, 3, 0], [2, 3], [0, 0, 1]]
SMALL = dict(K=2, hidden_size=4, num_particles=3, batch_size=2, dtype=torch.float64)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil(marker) -> bytes:
    return pickle.dumps({"format": "pyro-ssl-checkpoint", "version": 3, "x": _Payload(marker)})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    pyro_ssl.SSL(**SMALL).fit(DOCS, epochs=2, progress=False, checkpoint_dir=d)
    return d / CHECKPOINT_FILE


def _resume(d):
    return pyro_ssl.SSL(**SMALL).fit(DOCS, epochs=3, progress=False, checkpoint_dir=d, resume=True)


# ---------------------------------------------------------------------------- pickles
# The attack pickle uses the default protocol (4+); torch warns that it is not protocol 2 before
# refusing it, which is the refusal under test, not a problem.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_checkpoint_outer_pickle_is_not_run(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / CHECKPOINT_FILE).write_bytes(_evil(marker))
    with pytest.raises(ValueError, match="not a readable pyro-ssl checkpoint"):
        load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_checkpoint_inner_payload_pickle_with_a_valid_checksum_is_not_run(tmp_path):
    import hashlib

    marker = tmp_path / "ran"
    payload = _evil(marker)
    outer = {"format": "pyro-ssl-checkpoint", "version": 3, "sha256": hashlib.sha256(payload).hexdigest(),
             "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
    torch.save(outer, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match="not a readable pyro-ssl checkpoint"):
        load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert not marker.exists()


def test_saved_model_weights_pickle_is_not_run(tmp_path):
    m = pyro_ssl.fit(DOCS, epochs=1, progress=False, **SMALL)
    d = m.save(tmp_path / "m")
    marker = tmp_path / "ran"
    (d / WEIGHTS_FILE).write_bytes(pickle.dumps(_Payload(marker)))
    cfg = json.loads((d / CONFIG_FILE).read_text())
    cfg["files"].pop(WEIGHTS_FILE)  # no checksum to stop it first: the format itself must
    (d / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        pyro_ssl.SSL.load(d)
    assert not marker.exists()


def test_saved_model_config_pickle_is_not_run(tmp_path):
    m = pyro_ssl.fit(DOCS, epochs=1, progress=False, **SMALL)
    d = m.save(tmp_path / "m")
    marker = tmp_path / "ran"
    (d / CONFIG_FILE).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError, match="not valid JSON"):
        pyro_ssl.SSL.load(d)
    assert not marker.exists()


def test_ondisk_offsets_pickle_is_not_run(tmp_path):
    d = write_ondisk(Corpus(DOCS), tmp_path / "od").path
    marker = tmp_path / "ran"
    arr = np.empty(len(DOCS) + 1, dtype=object)
    arr[:] = [_Payload(marker)] * (len(DOCS) + 1)
    np.save(d / "offsets.npy", arr, allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain integer array"):
        OnDiskCorpus.open(d)
    assert not marker.exists()


def test_vocabulary_and_corpus_pickles_are_not_run(tmp_path):
    marker = tmp_path / "ran"
    f = tmp_path / "vocab.json"
    f.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError):
        Vocabulary.load(f)
    g = tmp_path / "corpus.pkl"
    g.write_bytes(pickle.dumps([_Payload(marker)]))
    try:
        load_corpus(g)  # read as text (or refused as binary); never unpickled
    except ValueError:
        pass
    assert not marker.exists()


# ---------------------------------------------------------------------------- checkpoints
def test_a_flipped_bit_in_the_counts_is_refused(ckpt, tmp_path):
    d = tmp_path / "ck"
    d.mkdir()
    raw = bytearray(ckpt.read_bytes())
    state = load_checkpoint(ckpt)
    counts = state["em"]["counts"].numpy().tobytes()
    pos = bytes(raw).find(counts[8:24])  # inside the payload's counts tensor
    assert pos > 0
    raw[pos] ^= 0x01
    (d / CHECKPOINT_FILE).write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum mismatch"):
        _resume(d)


def _tampered(ckpt, tmp_path, edit):
    d = tmp_path / "ck"
    d.mkdir()
    state = load_checkpoint(ckpt)
    state.pop("path")
    edit(state)
    save_checkpoint(d / CHECKPOINT_FILE, state)  # consistent checksum: only range checks can catch it
    return d


def _set_path(s, v):
    s["em"]["paths"][0] = v


def _set_count(s):
    s["em"]["counts"][0, 0] += 1.0


def _bogus_adam(s):
    name = next(iter(s["em"]["mstep"]))
    s["em"]["mstep"][name]["state"][0]["exp_avg"] = torch.zeros(3, 3, 3)


TAMPER = [
    ("path topic K", lambda s: _set_path(s, SMALL["K"]), r"paths hold topics in \[0, 2\], outside \[0, 2\)"),
    ("path topic -1", lambda s: _set_path(s, -1), r"outside \[0, 2\)"),
    ("paths too short", lambda s: s["em"].update(paths=s["em"]["paths"][:-1]), r"path entries"),
    ("counts off the paths", _set_count, r"counts are not the topic-word counts"),
    ("counts NaN", lambda s: s["em"]["counts"].fill_(float("nan")), r"counts holds NaN"),
    ("log_phi shape", lambda s: s["em"].update(log_phi=torch.zeros(3, 2)), r"log_phi must be a \(2, 4\)"),
    ("bogus Adam state", _bogus_adam, r"Adam exp_avg of .* must have shape"),
    ("Adam not a dict", lambda s: s["em"].update(mstep=[1, 2]), r"Adam state must be a dict"),
    ("Adam step", lambda s: next(iter(s["em"]["mstep"].values()))["state"][0].update(step=torch.tensor(-1.0)),
     r"Adam step"),
    ("prior weights inf", lambda s: next(iter(s["em"]["prior"].values())).fill_(float("inf")), r"NaN or infinite"),
    ("history not a list", lambda s: s.update(history={"a": 1}), r"history must be a list"),
    ("history too short", lambda s: s.update(history=s["history"][:1]), r"history holds 1 epochs"),
    ("epoch negative", lambda s: s.update(epoch=-1), r"epoch must be an integer >= 0"),
    ("start after epoch", lambda s: s.update(start_epoch=5), r"start_epoch 5 is after epoch 2"),
]


@pytest.mark.parametrize("edit, pattern", [t[1:] for t in TAMPER], ids=[t[0] for t in TAMPER])
def test_tampered_checkpoint_is_refused_on_resume(ckpt, tmp_path, edit, pattern):
    d = _tampered(ckpt, tmp_path, edit)
    with pytest.raises(ValueError, match=pattern):
        _resume(d)


def test_temporary_files_of_killed_writes_are_removed(ckpt, tmp_path):
    d = tmp_path / "ck"
    d.mkdir()
    (d / CHECKPOINT_FILE).write_bytes(ckpt.read_bytes())
    stale = [d / f".{CHECKPOINT_FILE}.abc123.tmp", d / f".{CHECKPOINT_FILE}.zz.tmp"]
    for f in stale:
        f.write_bytes(b"half a checkpoint")
    m = _resume(d)
    assert len(m.history) == 3
    assert sorted(p.name for p in d.iterdir()) == [CHECKPOINT_FILE]
