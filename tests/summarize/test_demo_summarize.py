"""`gptx demo --task summarize` end to end on a few standard-library packages and a handful of steps: every stage
runs and the summaries and ROUGE are shown (the ten-minute run is the same code with planned step counts)."""
import pytest

from gptx.__main__ import main


def test_demo_summarize_tiny(tmp_path, capsys):
    pytest.importorskip("rouge_score")
    out = tmp_path / "demo"
    assert main(["demo", "--task", "summarize", "--packages", "json,logging,queue,configparser", "--steps", "2",
                 "--test-limit", "4", "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "corpus:" in text and "pretrained 2 steps" in text and "fine-tuned 2 steps" in text
    assert text.count("  reference: ") == 3 and text.count("  generated: ") == 3
    assert "ROUGE F1 x 100 on 4 test pairs" in text and "lead-1" in text
    assert (out / "data" / "test.jsonl").exists() and (out / "finetuned").is_dir()
    assert main(["demo", "--task", "summarize", "--out", str(out)]) == 1  # an existing demo is not overwritten
    assert "already holds" in capsys.readouterr().err
