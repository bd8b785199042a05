"""`python -m train.export`: a checkpoint as a Hugging Face Llama folder that transformers loads with no custom
code and that computes the same function (transformers is a test-only dependency)."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from model import ModelConfig, Transformer  # noqa: E402
from tests.trainruns import run_args  # noqa: E402
from tokenizer.encoding import Encoder  # noqa: E402
from train import cli, export, generate  # noqa: E402


def hf_model_of(model: Transformer, folder, end_of_text: int = 0):
    """A model exported without a run: the weights and config files only."""
    folder.mkdir(exist_ok=True)
    export.write_weights(export.hf_state_dict(model, torch.float32), str(folder), 5 * 10**9)
    (folder / "config.json").write_text(json.dumps(export.hf_config(model, end_of_text, "float32")))
    return transformers.AutoModelForCausalLM.from_pretrained(str(folder)).eval()


@pytest.mark.parametrize("tie, kv_heads", [(True, 0), (False, 2), (True, 1)])
def test_exported_logits_equal_the_model_s(tmp_path, tie, kv_heads):
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=300,
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=kv_heads,
        max_seq_len=64,
        tie_embeddings=tie,
        rope_theta=500_000.0,
    )
    model = Transformer(config).eval()
    hf = hf_model_of(model, tmp_path / "hf")
    tokens = torch.randint(0, 300, (2, 40))
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max() <= 1e-4
        # without the row permutation the model loads and computes something else
        unpermuted = export.hf_state_dict(model, torch.float32)
        unpermuted["model.layers.0.self_attn.q_proj.weight"] = model.layers[0].attention.wq.weight.detach().clone()
        hf.load_state_dict(unpermuted, strict=False)
        assert (model(tokens) - hf(tokens).logits).abs().max() > 1e-3  # 1e-7 with it


def test_sharded_weights_load_through_their_index(tmp_path):
    torch.manual_seed(1)
    model = Transformer(ModelConfig(vocab_size=300, dim=64, n_layers=3, n_heads=4, max_seq_len=32)).eval()
    files = export.write_weights(export.hf_state_dict(model, torch.float32), str(tmp_path), 100_000)
    assert export.INDEX_FILE in files and len(files) > 3
    (tmp_path / "config.json").write_text(json.dumps(export.hf_config(model, 0, "float32")))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    tokens = torch.randint(0, 300, (1, 16))
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max() <= 1e-4


def test_a_trained_run_exports_and_generates_the_same_tokens_in_transformers(train_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(run_args(train_data, run, "--training.steps", "3")) == 0
    assert export.main(["--checkpoint", str(run), "--output", str(tmp_path / "hf")]) == 0
    model, encoder = generate.load_run(str(run))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    prompt = "Die kleine Stadt am Fluss <|endoftext|> 🙂"
    ids = tokenizer(prompt)["input_ids"]
    # what train.generate feeds the model: <|endoftext|>, then the prompt as ordinary text
    assert ids == [encoder.end_of_text, *Encoder(str(train_data / "tok"), backend="hf").encode([prompt])[0]]
    assert tokenizer.decode(ids, skip_special_tokens=True) == prompt
    assert (tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token) == ("<|endoftext|>",) * 3
    assert tokenizer.model_max_length == model.config.max_seq_len
    # greedy generation, 20 tokens within the tiny model's 32 positions
    ids = tokenizer("Die Stadt")["input_ids"]
    ours = generate.generate(model, ids, 20, 0.0, 0, 1.0, None, stop_token=None)
    with torch.no_grad():
        theirs = hf.generate(
            torch.tensor([ids]), max_new_tokens=20, do_sample=False, eos_token_id=None, min_new_tokens=20
        )
    assert len(ours) == 20 and theirs[0, len(ids) :].tolist() == ours


def test_a_tensor_parallel_checkpoint_exports_the_same_model(train_data, tmp_path):
    from tests.trainruns import torchrun

    run = tmp_path / "tp2"
    result = torchrun(2, *run_args(train_data, run, "--training.steps", "2", "--parallel.tp", "2"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert export.main(["--checkpoint", str(run), "--output", str(tmp_path / "hf")]) == 0
    model, _ = generate.load_run(str(run))  # the sharded checkpoint gathered into one process
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    tokens = torch.randint(0, model.config.vocab_size, (2, 24))
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max() <= 1e-4


def test_eval_gives_the_same_bits_per_byte_on_a_checkpoint_on_its_export_and_in_transformers(train_data, tmp_path):
    import math

    import pyarrow as pa
    import pyarrow.parquet as pq

    from train import eval as evaluation

    run = tmp_path / "run"
    assert cli.main(run_args(train_data, run, "--training.steps", "3")) == 0
    assert export.main(["--checkpoint", str(run), "--output", str(tmp_path / "hf")]) == 0
    texts = ["Die kleine Stadt am Fluss ist alt. " * 3, "A short one.", "Ελληνικά και 中文 🙂 " * 12]
    pq.write_table(pa.table({"text": texts}), tmp_path / "held-out.parquet")
    figures = {}
    for name, target in (("checkpoint", run), ("export", tmp_path / "hf")):
        output = tmp_path / f"{name}.json"
        assert (
            evaluation.main(
                [
                    "--checkpoint",
                    str(target),
                    "--input",
                    str(tmp_path / "held-out.parquet"),
                    "--output",
                    str(output),
                    "--batch-size",
                    "2",
                ]
            )
            == 0
        )
        figures[name] = json.loads(output.read_text())
    ours = figures["checkpoint"]
    assert ours["documents"] == 3 and ours["bytes"] == sum(len(t.encode()) for t in texts)
    assert ours["bits_per_byte"] == pytest.approx(figures["export"]["bits_per_byte"], rel=1e-5)
    assert (
        evaluation.main(
            [
                "--checkpoint",
                str(run),
                "--input",
                str(tmp_path / "held-out.parquet"),
                "--max-documents",
                "1",
                "--output",
                str(tmp_path / "one.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "one.json").read_text())["bytes"] == len(texts[0].encode())
    # no text at all is an error, not loss 0 and perplexity 1
    (tmp_path / "empty.jsonl").write_text('{"text": ""}\n')
    assert evaluation.main(["--checkpoint", str(run), "--input", str(tmp_path / "empty.jsonl")]) == 1
    # the same figure from transformers, one window of the tiny model's 32 positions at a time
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    nats = 0.0
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        for start in range(0, len(ids) - 1, 32):
            window = torch.tensor([ids[start : start + 33]])
            with torch.no_grad():
                logits = hf(window[:, :-1]).logits
            nats += torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum").item()
    assert nats / math.log(2) / ours["bytes"] == pytest.approx(ours["bits_per_byte"], rel=1e-4)
