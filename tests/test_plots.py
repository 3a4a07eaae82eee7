"""Every plot renders headless to a non-trivial PNG."""

import matplotlib
import numpy as np
import pytest
import torch

from pyro_ssl import plots
from pyro_ssl.diagnostics import run_chains

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_png(path, min_bytes=3000):
    from matplotlib.image import imread

    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > min_bytes
    img = imread(path)
    assert img.shape[0] > 50 and img.shape[1] > 50
    assert np.std(img[..., :3]) > 0.01  # not a blank canvas


@pytest.fixture(scope="module")
def fitted():
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(12, (int(torch.randint(6, 14, (), generator=g)),), generator=g).tolist() for _ in range(12)]
    chains, idata = run_chains(docs[:9], num_chains=2, epochs=3, eval_data=docs[9:], eval_particles=10,
                               K=3, hidden_size=8, num_particles=4)
    return chains, idata, docs


def test_backend_is_headless():
    assert matplotlib.get_backend().lower() == "agg"


def test_training_curves(fitted, tmp_path):
    chains, _, _ = fitted
    p = plots.plot_training_curves({"seed 0": chains[0], "seed 1": chains[1].history}, path=tmp_path / "a" / "tc.png")
    assert p == tmp_path / "a" / "tc.png"
    check_png(p)
    p2 = plots.plot_training_curves(chains[0].history, ["log_joint_per_token", "heldout_log_lik", "completion_ppl"],
                                    tmp_path / "tc2.png")
    check_png(p2)  # a key that was not recorded gets a note, not an error


def test_topics_grid(fitted, tmp_path):
    m = fitted[0][0]
    check_png(plots.plot_topics(m.top_words(5), tmp_path / "topics.png"))
    weights = [m.phi[k].topk(5).values.tolist() for k in range(m.K)]
    check_png(plots.plot_topics(m.top_words(5), tmp_path / "topics_w.png", weights=weights, ncols=2))
    with pytest.raises(ValueError):
        plots.plot_topics([], tmp_path / "x.png")


def test_topic_ribbon(fitted, tmp_path):
    m, docs = fitted[0][0], fitted[2]
    doc = docs[0] + docs[1]
    z = m.predict([doc], num_sweeps=2)[0]
    check_png(plots.plot_topic_ribbon([f"w{i}" for i in doc], z, tmp_path / "ribbon.png", K=m.K, words_per_line=8))
    with pytest.raises(ValueError, match="topics"):
        plots.plot_topic_ribbon(["a", "b"], [0], tmp_path / "bad.png")


def test_mixing(fitted, tmp_path):
    check_png(plots.plot_mixing(fitted[0][0], tmp_path / "mixing.png"))
    check_png(plots.plot_mixing(fitted[0][1].history, tmp_path / "mixing2.png", epochs=[2], title="last epoch"))


def test_traces(fitted, tmp_path):
    check_png(plots.plot_traces(fitted[1], tmp_path / "traces.png"))
    check_png(plots.plot_traces(fitted[1], tmp_path / "traces1.png", var_names=["log_joint_per_token"]))


def test_topic_colours_follow_topic_ids_and_mixing_has_titles(fitted, tmp_path):
    """A topic keeps its colour when panels are reordered (by usage); the mixing figure's panels
    have titles and head-room above their largest value (ESS at P is not clipped)."""
    import matplotlib.figure

    m = fitted[0][0]
    seen = {}
    real = matplotlib.figure.Figure.savefig

    def grab(fig, *a, **k):
        seen["fig"] = fig
        return real(fig, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.figure.Figure, "savefig", grab)
        top = m.top_words(3)
        weights = [m.phi[k].topk(3).values.tolist() for k in (2, 0, 1)]
        plots.plot_topics([top[2], top[0], top[1]], tmp_path / "t.png", weights=weights, topic_ids=[2, 0, 1], K=3)
        axes = seen["fig"].axes
        colours = plots.topic_colors(3)
        assert [ax.get_title() for ax in axes[:3]] == ["topic 2", "topic 0", "topic 1"]
        assert np.allclose(axes[0].patches[0].get_facecolor()[:3], colours[2][:3])
        plots.plot_mixing(m, tmp_path / "mix.png")
        axes = seen["fig"].axes
        assert all(ax.get_title() for ax in axes)
        for ax in axes:
            top = max(float(np.nanmax(line.get_ydata())) for line in ax.get_lines())
            assert ax.get_ylim()[1] >= 1.05 * top  # head-room: no line drawn on the frame
            assert ax.get_legend() is not None
        plots.plot_training_curves(m, "log_joint_per_token", tmp_path / "tc.png")
        assert seen["fig"].axes[0].get_legend() is not None  # a single model is labelled too
