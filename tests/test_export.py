"""``ffnet export``: checkpoint → re-parameterized model → ONNX, checked against PyTorch with onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("mmengine")  # the checkpoint reader lives with the training glue

import timm  # noqa: E402

import ffnet.classification  # noqa: E402,F401
from ffnet.core import is_reparameterized, reparameterize  # noqa: E402
from ffnet.classification.export import build_deployed_model, export_onnx  # noqa: E402
from ffnet.main import main  # noqa: E402


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (eval mode then matters)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
        for name, param in model.named_parameters():
            if name.startswith("head."):
                param.copy_(torch.randn(param.shape, generator=generator))
    return model.eval()


def run_onnx(path, images: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]


def test_export_cli_matches_the_train_time_model(tmp_path, capsys):
    trained = randomized(timm.create_model("ffnet_1"))
    checkpoint = tmp_path / "ffnet_1.pth.tar"
    torch.save({"state_dict": trained.state_dict(), "epoch": 3}, checkpoint)  # timm CheckpointSaver layout
    out = tmp_path / "ffnet_1.onnx"

    assert main(["classification", "export", "ffnet_1", "--out", str(out), "--checkpoint", str(checkpoint), "--img-size", "64",
                 "--batch-size", "2", "--dynamic-batch"]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff onnxruntime vs torch" in printed and "opset 17" in printed

    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # batch 3: dynamic axis
    with torch.no_grad():
        expected = trained(images).numpy()
    got = run_onnx(out, images)
    assert np.abs(expected).max() > 0.1, "logits too small to make the comparison meaningful"
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_dynamo_exporter_on_a_small_deployed_model(tmp_path):
    model = randomized(timm.create_model("ffnet_1", depths=(1, 1, 1, 1), num_classes=10))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images).numpy()
    deployed = reparameterize(model)
    assert is_reparameterized(deployed)
    exporter, opset = export_onnx(deployed, tmp_path / "tiny.onnx", 64, batch_size=2, opset=18, exporter="dynamo")
    assert (exporter, opset) == ("dynamo", 18)
    np.testing.assert_allclose(run_onnx(tmp_path / "tiny.onnx", images), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())


def test_export_errors_name_the_problem(tmp_path, capsys):
    missing = tmp_path / "none.pth"
    assert main(["classification", "export", "ffnet_1", "--out", str(tmp_path / "x.onnx"), "--checkpoint",
                 str(missing)]) == 2
    assert capsys.readouterr().err.strip() == (f"ffnet classification export: error: {missing}: checkpoint not found; "
                                               "check the path")
    assert main(["classification", "export", "ffnet_1", "--out", str(tmp_path / "x.onnx"), "--img-size", "16"]) == 2
    assert "--img-size must be at least 32" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--exporter torchscript"):
        export_onnx(build_deployed_model("resnet10t"), tmp_path / "x.onnx", 64, opset=17, exporter="dynamo")
