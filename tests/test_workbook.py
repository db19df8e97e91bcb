import json

from labkit import train, workbook


def test_record_results_merges_sections(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    workbook.record_results("unet", {"dice": 0.5})
    path = workbook.record_results("resnet34_unet", {"dice": 0.6})
    workbook.record_results("unet", {"iou": 0.4})
    assert json.loads(path.read_text()) == {"unet": {"dice": 0.5, "iou": 0.4}, "resnet34_unet": {"dice": 0.6}}


def test_run_record_warns_loudly_on_synthetic_data(synthetic_root):
    run = workbook.setup_notebook("smoke", synthetic_root)
    assert run.synthetic and "synthetic" in run._repr_markdown_().lower()


def test_trained_checkpoint_is_reused_instead_of_retraining(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    run = workbook.setup_notebook("smoke", synthetic_root)
    first = workbook.trained_checkpoint("unet", run)

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although a matching checkpoint exists")

    monkeypatch.setattr(train, "fit", no_training)
    assert workbook.trained_checkpoint("unet", run) == first
    assert "Using" in capsys.readouterr().out


def test_trained_checkpoint_retrains_when_asked(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    run = workbook.setup_notebook("smoke", synthetic_root)
    workbook.trained_checkpoint("unet", run)
    calls = []

    def recording_fit(config, **kwargs):
        calls.append(config)
        return train.TrainResult(run_dir=train.run_dir_for(config))

    monkeypatch.setattr(train, "fit", recording_fit)
    workbook.trained_checkpoint("unet", run, retrain=True)
    assert len(calls) == 1
