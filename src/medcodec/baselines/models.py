"""Build, save and load the single-channel CompressAI baselines (torch and compressai needed)."""

from __future__ import annotations

from pathlib import Path

from medcodec.baselines import ARCHS


def build(arch: str):
    """A CompressAI model of ``arch`` with 1 input and 1 output channel."""
    import compressai.models as cm
    from compressai.layers import ResidualBlockWithStride, subpel_conv3x3
    from compressai.models.utils import conv, deconv

    cls_name, sizes = ARCHS[arch]
    model = getattr(cm, cls_name)(**sizes)
    n = sizes["N"]
    if arch == "cheng2020-attn":
        model.g_a[0] = ResidualBlockWithStride(1, n, stride=2)
        model.g_s[-1] = subpel_conv3x3(n, 1, 2)
    else:
        model.g_a[0] = conv(1, n)
        model.g_s[-1] = deconv(n, 1)
    return model


def save(model, path: Path) -> None:
    """State dict (entropy tables included, after ``model.update``) as safetensors."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)


def load(arch: str, path: Path):
    """The trained model in eval mode, with the entropy tables it was saved with."""
    from safetensors.torch import load_file

    model = build(arch)
    model.load_state_dict(load_file(str(path)))
    model.eval()
    return model
