#!/usr/bin/env python3
"""Generate the fixture models under tests/fixtures/ (deterministic, re-runnable).

    .venv/bin/python scripts/make_fixture_models.py

Writes three MLflow model directories, each saved with ``mlflow.onnx.save_model`` (so MLmodel,
conda.yaml, python_env.yaml, requirements.txt, input examples and the external-data layout are
exactly what MLflow writes), then made reproducible:

  tests/fixtures/sentiment/     a small real sentiment classifier (WordPiece tokenizer.json,
                                embedding + masked mean pooling + linear head), labels
                                [NEGATIVE, POSITIVE], metadata.golden
  tests/fixtures/sentiment_v2/  same pipeline, different seed and weights, labels
                                [negative, positive] (for hot-reload tests)
  tests/fixtures/tensor_model/  x float32 [batch, 4] -> y float32 [batch, 3], y = x @ W + b
  tests/fixtures/typed_model/   one input of each element type the Open Inference Protocol
                                serves (float64, int64, int32, int8, uint8, bool, float16),
                                shape [batch, 2], and outputs of the same types (doubled,
                                copied, negated, cast); no input example (the gate warms it
                                up with zeros)
  tests/fixtures/tensor_multi/  a float32 [batch, 2], b int64 [batch, 1] -> sum float32
                                [batch, 2] = a + b, twice int64 [batch, 1] = 2 * b (two inputs,
                                two outputs, two types: for the MLflow conformance test)
  tests/fixtures/expected.json  reference outputs (token ids, logits, probabilities, y) computed
                                with tokenizers + onnxruntime in Python, for cross-checks

Embeddings start from the VADER sentiment lexicon (vaderSentiment==3.3.2, vader_lexicon.txt)
and are fine-tuned, together with the linear head, by logistic regression in numpy on the
labeled TRAIN sentences below. HELDOUT sentences are never used for training; the accuracy on
them is measured with onnxruntime at the end and printed.

Things made deterministic on purpose (MLflow itself would randomise them on every save):
  * the external data file: onnx.save_model names it ``<uuid1>.data``; we pass a fixed
    ``location`` (a uuid5 of the fixture name, same shape) through mlflow.onnx.save_model's
    kwargs;
  * MLmodel ``model_uuid`` (uuid5 hex) and ``utc_time_created`` (fixed date).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
FIXED_TIME = "2025-01-01 00:00:00.000000"
UUID_NS = uuid.UUID("6f1d2c4e-8a51-4b0e-9a7c-3d2f7e5b9c10")
MAX_SEQUENCE_LENGTH = 128
EMBED_DIM = 16
OPSET = 17
IR_VERSION = 9

# --------------------------------------------------------------------------------------------
# Labeled data (1 = positive, 0 = negative). TRAIN is used to fit; HELDOUT only to evaluate.
# --------------------------------------------------------------------------------------------
TRAIN_POS = """\
I love this product
I love it, works perfectly
This is great
What a great experience
Excellent quality and fast shipping
The service was excellent
Absolutely wonderful, thank you
I am very happy with this purchase
Very happy with the result
Best purchase I have made this year
This is the best phone I have owned
Amazing value for the price
Amazing customer support, they were so helpful
Highly recommend this to everyone
I would recommend it to my friends
The staff were friendly and helpful
Friendly people and a lovely place
Good quality, good price
Pretty good overall, I like it
I really like the design
I like how easy it is to use
Easy to set up and works great
Works like a charm
Perfect fit and very comfortable
Comfortable, stylish and well made
Beautiful colors and a nice finish
Nice job, the team did a fantastic job
Fantastic movie, the acting was brilliant
A brilliant book, I enjoyed every page
I enjoyed the show a lot
We had a fun time and a great meal
Delicious food and a cozy atmosphere
The food was delicious and fresh
Fresh, tasty and beautifully presented
Super fast delivery, very pleased
Pleased with the quality
Impressive performance and great battery life
The sound is clear and powerful
Outstanding service from start to finish
Superb craftsmanship, a real gem
A gem of a hotel, clean and quiet
Clean rooms and a helpful staff
Everything was perfect
Perfect, exactly what I wanted
Exactly as described, very satisfied
Satisfied customer, will buy again
I will definitely buy again
Glad I bought it
So glad we chose this place
The kids loved it
My wife loves it
Love love love it
This made my day
It exceeded my expectations
Exceeded all expectations, awesome
Awesome product, awesome support
Incredible experience, thank you so much
Thank you for the amazing help
Great value and reliable
Reliable, sturdy and well designed
Smooth and efficient process
The app is fast and intuitive
Intuitive interface and a pleasure to use
A pleasure to work with
Charming little cafe with lovely coffee
Lovely gift, my mother adored it
Happy with my new laptop
Solid build quality, highly recommended
Five stars, great job
Top notch quality
Terrific value, I am thrilled
Thrilled with the results
A fantastic product that I recommend
The best service ever
Wonderful staff and great food
Great product, love it
Brilliant idea, well executed
Hilarious and heartwarming film
Beautiful and elegant design
Kind and professional team
"""

TRAIN_NEG = """\
I hate this product
I hate it, it broke after one day
This is terrible
What a terrible experience
Poor quality and slow shipping
The service was awful
Absolutely horrible, never again
I am very disappointed with this purchase
Very unhappy with the result
Worst purchase I have made this year
This is the worst phone I have owned
A waste of money
Rude customer support, they were useless
I would not recommend this to anyone
Do not buy this
The staff were rude and unhelpful
Dirty place and angry people
Bad quality, bad price
Pretty bad overall, I dislike it
I really dislike the design
It is difficult and annoying to use
Hard to set up and it never works
It stopped working after a week
Broken on arrival
Uncomfortable, ugly and badly made
Ugly colors and a cheap finish
The team did a horrible job
Boring movie, the acting was awful
A boring book, I hated every page
I regret buying this
We had a miserable time and a bad meal
Disgusting food and a noisy atmosphere
The food was cold and tasteless
Stale, bland and poorly presented
Very slow delivery, extremely annoyed
Annoyed with the quality
Weak performance and terrible battery life
The sound is muffled and weak
Awful service from start to finish
Shoddy craftsmanship, a total failure
A nightmare of a hotel, dirty and loud
Filthy rooms and a rude staff
Everything was wrong
Wrong size, not what I wanted
Nothing like described, very dissatisfied
Frustrated customer, never buying again
I will never buy this again
Sorry I bought it
So sad we chose this place
The kids hated it
My wife hates it
Hate hate hate it
This ruined my day
It failed to meet my expectations
Failed all expectations, pathetic
Pathetic product, useless support
Terrible experience, what a mess
No help at all, a complete mess
Overpriced and unreliable
Flimsy, fragile and poorly designed
Slow and frustrating process
The app is slow and confusing
Confusing interface and a pain to use
A pain to work with
Depressing little cafe with awful coffee
Cheap gift, my mother was upset
Angry about my new laptop
Horrible build quality, avoid it
One star, terrible job
Bottom of the barrel quality
Awful value, I am furious
Furious about the results
A horrible product that I regret
The worst service ever
Rude staff and bad food
Bad product, hate it
Stupid idea, badly executed
Painful and tedious film
Ugly and clumsy design
Careless and unprofessional team
"""

HELDOUT_POS = """\
This is wonderful, great product
Superb quality, I am delighted
The hotel was lovely and the staff were kind
Fantastic support, they solved my problem quickly
I adore this little gadget
An excellent read, funny and smart
Great sound and a beautiful screen
The new update is awesome
Really enjoyed our stay, very comfortable bed
Friendly service and tasty pizza
Works perfectly, I am very pleased
Such a cheerful and pleasant place
Gorgeous dress, fits perfectly
The best coffee in town
Remarkable value, highly recommend
Clean, bright and welcoming apartment
A delightful evening with amazing food
Reliable and fast, love it
Wonderful experience from start to finish
Happy customer, great job
"""

HELDOUT_NEG = """\
terrible, awful experience
Horrible quality, I am disgusted
The hotel was dirty and the staff were rude
Useless support, they ignored my problem
I despise this little gadget
A dreadful read, dull and stupid
Bad sound and an ugly screen
The new update is a disaster
Hated our stay, very uncomfortable bed
Rude service and greasy pizza
It broke immediately, I am very angry
Such a gloomy and unpleasant place
Cheap dress, the seams ripped
The worst coffee in town
Terrible value, avoid this
Filthy, dark and noisy apartment
A miserable evening with awful food
Unreliable and slow, hate it
Awful experience from start to finish
Disappointed customer, poor job
"""

# Harder sentences (negation, mild wording, words missing from the vocabulary). Not used for
# training nor for the vocabulary; accuracy is reported, not asserted.
CHALLENGE = [
    ("Not bad at all, actually quite nice", 1),
    ("I was not happy with the service", 0),
    ("It does the job and the price was fair", 1),
    ("The screen cracked within two days", 0),
    ("Customer care went above and beyond for us", 1),
    ("Meh, nothing special and overpriced", 0),
    ("Would gladly order from them again", 1),
    ("The instructions were missing and support never replied", 0),
    ("Spotless kitchen, comfy beds, superb host", 1),
    ("Returned it the next morning, total junk", 0),
]

GOLDEN_TEXTS = [
    ("I love this", 1),
    ("This is wonderful, great product", 1),
    ("Absolutely fantastic service, highly recommend", 1),
    ("I hate this", 0),
    ("terrible, awful experience", 0),
    ("The worst purchase I have ever made", 0),
]

# Extra texts whose reference outputs go to expected.json (not used for training).
PROBE_TEXTS = [
    "I love this",
    "I hate this",
    "This is wonderful, great product",
    "terrible, awful experience",
    "The package arrived on Tuesday",
    "",
    "Héllo WORLD!! xyzzyqux",
]

# Common English words so the vocabulary looks like a real (small) English vocabulary.
COMMON_WORDS = """
the of and to a in is it you that he was for on are with as i his they be at one have this
from or had by not word but what some we can out other were all there when up use your how
said an each she which do their time if will way about many then them write would like so
these her long make thing see him two has look more day could go come did number sound no
most people my over know water than call first who may down side been now find any new work
part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line
differ turn cause much mean before move right boy old too same tell does set three want air
well also play small end put home read hand port large spell add even land here must big
high such follow act why ask men change went light kind off need house picture try us again
animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye
never last let thought city tree cross farm hard start might story saw far sea draw left
late run don't while press close night real life few north open seem together next white
children begin got walk example ease paper group always music those both mark often letter
until mile river car feet care second book carry took science eat room friend began idea
fish mountain stop once base hear horse cut sure watch color face wood main enough plain
girl usual young ready above ever red list though feel talk bird soon body dog family direct
pose leave song measure door product black short numeral class wind question happen complete
ship area half rock order fire south problem piece told knew pass since top whole king space
heard best hour better true during hundred five remember step early hold west ground interest
reach fast verb sing listen six table travel less morning ten simple several vowel toward war
lay against pattern slow center love person money serve appear road map rain rule govern pull
cold notice voice unit power town fine certain fly fall lead cry dark machine note wait plan
figure star box noun field rest correct able pound done beauty drive stood contain front teach
week final gave green oh quick develop ocean warm free minute strong special mind behind clear
tail produce fact street inch multiply nothing course stay wheel full force blue object decide
surface deep moon island foot system busy test record boat common gold possible plane stead
dry wonder laugh thousand ago ran check game shape equate hot miss brought heat snow tire bring
yes distant fill east paint language among am is are was were been being im ive its it's
hello hi thanks please okay today tomorrow yesterday monday tuesday wednesday thursday friday
saturday sunday arrived received ordered bought used tried
phone laptop app screen battery price service staff hotel room movie film show restaurant
order delivery shipping package customer support quality design size color experience stay
""".split()

SUFFIX_PIECES = ["##es", "##ed", "##ing", "##ly", "##er", "##est", "##ness", "##ful", "##less",
                 "##able", "##ment"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def lines(block: str) -> list[str]:
    return [s.strip() for s in block.strip().splitlines() if s.strip()]


def labeled(pos: str, neg: str) -> list[tuple[str, int]]:
    return [(t, 1) for t in lines(pos)] + [(t, 0) for t in lines(neg)]


# --------------------------------------------------------------------------------------------
# Lexicon and tokenizer
# --------------------------------------------------------------------------------------------
def load_vader() -> dict[str, float]:
    import vaderSentiment

    path = Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"
    lex = {}
    with open(path, encoding="utf-8") as f:
        for row in f:
            parts = row.rstrip("\n").split("\t")
            if len(parts) >= 2:
                lex[parts[0]] = float(parts[1])
    return lex


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+|[^\sa-z]", text.lower())


def build_vocab(lexicon: dict[str, float], texts: list[str]) -> list[str]:
    punct = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    digits = list("0123456789")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words = set(w for w in COMMON_WORDS if re.fullmatch(r"[a-z]+", w))
    for t in texts:
        words.update(w for w in words_of(t) if re.fullmatch(r"[a-z]+", w))
    # Strongly polarised lexicon words (|valence| >= 2.0), letters only.
    words.update(w for w, v in lexicon.items() if re.fullmatch(r"[a-z]+", w) and abs(v) >= 2.0)
    words -= set(letters)
    vocab = SPECIAL + punct + digits + letters + ["##" + c for c in letters] + SUFFIX_PIECES
    vocab += sorted(words)
    assert len(vocab) == len(set(vocab))
    return vocab


def build_tokenizer(vocab: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vmap = {tok: i for i, tok in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(vocab=vmap, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vmap["[CLS]"]), ("[SEP]", vmap["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(SPECIAL)
    return tok


def encode(tok, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encs = tok.encode_batch(texts)
    n = max(len(e.ids) for e in encs)
    ids = np.zeros((len(texts), n), dtype=np.int64)
    mask = np.zeros((len(texts), n), dtype=np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    return ids, mask


# --------------------------------------------------------------------------------------------
# Training (numpy): embedding (lexicon prior) -> masked mean pooling -> linear -> softmax
# --------------------------------------------------------------------------------------------
def init_embeddings(vocab: list[str], lexicon: dict[str, float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    emb = rng.normal(0.0, 0.05, size=(len(vocab), EMBED_DIM)).astype(np.float64)
    emb[:, 0] = 0.0
    for i, tok in enumerate(vocab):
        if tok in lexicon:
            emb[i, 0] = lexicon[tok] / 4.0  # VADER valence is in [-4, 4]
    emb[0, :] = 0.0  # [PAD]
    return emb


def forward(emb, w, b, ids, mask):
    m = mask.astype(np.float64)
    cnt = np.maximum(m.sum(1, keepdims=True), 1.0)
    pooled = (emb[ids] * m[:, :, None]).sum(1) / cnt
    logits = pooled @ w + b
    return pooled, cnt, logits


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def train(emb0, ids, mask, y, seed, steps=1000, lr=0.05, lam_e=0.02, lam_w=1e-4, pos_scale=8.0):
    rng = np.random.default_rng(seed + 1)
    emb = emb0.copy()
    # Head: logit_pos - logit_neg starts as pos_scale * (sentiment dimension 0).
    w = rng.normal(0.0, 0.01, size=(EMBED_DIM, 2))
    w[0] = [-pos_scale / 2, pos_scale / 2]
    b = np.zeros(2)
    params = [emb, w, b]
    mom = [np.zeros_like(p) for p in params]
    vel = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    onehot = np.eye(2)[y]
    m = mask.astype(np.float64)
    n = len(y)
    for t in range(1, steps + 1):
        pooled, cnt, logits = forward(emb, w, b, ids, mask)
        g = (softmax(logits) - onehot) / n
        gw = pooled.T @ g + 2 * lam_w * w
        gb = g.sum(0)
        gpooled = g @ w.T
        gtok = (gpooled / cnt)[:, None, :] * m[:, :, None]
        ge = np.zeros_like(emb)
        np.add.at(ge, ids, gtok)
        ge += 2 * lam_e * (emb - emb0) * (np.abs(ge).sum(1, keepdims=True) > 0)
        ge[0] = 0.0
        for k, (p, gr) in enumerate(zip(params, [ge, gw, gb])):
            mom[k] = b1 * mom[k] + (1 - b1) * gr
            vel[k] = b2 * vel[k] + (1 - b2) * gr * gr
            p -= lr * (mom[k] / (1 - b1**t)) / (np.sqrt(vel[k] / (1 - b2**t)) + eps)
    return emb.astype(np.float32), w.astype(np.float32), b.astype(np.float32)


# --------------------------------------------------------------------------------------------
# ONNX graphs
# --------------------------------------------------------------------------------------------
def text_graph(emb, w, b, name: str):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(emb, "embeddings"),
        numpy_helper.from_array(w, "classifier.weight"),
        numpy_helper.from_array(b, "classifier.bias"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "unsqueeze_axes"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "sequence_axis"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Gather", ["embeddings", "input_ids"], ["token_embeddings"], axis=0,
                         name="embed"),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT,
                         name="mask_cast"),
        helper.make_node("Unsqueeze", ["mask_f", "unsqueeze_axes"], ["mask_3d"],
                         name="mask_unsqueeze"),
        helper.make_node("Mul", ["token_embeddings", "mask_3d"], ["masked_embeddings"],
                         name="mask_mul"),
        helper.make_node("ReduceSum", ["masked_embeddings", "sequence_axis"], ["summed"],
                         keepdims=0, name="sum_tokens"),
        helper.make_node("ReduceSum", ["mask_f", "sequence_axis"], ["token_count"], keepdims=1,
                         name="count_tokens"),
        helper.make_node("Max", ["token_count", "one"], ["token_count_clamped"], name="clamp"),
        helper.make_node("Div", ["summed", "token_count_clamped"], ["pooled"], name="mean_pool"),
        helper.make_node("MatMul", ["pooled", "classifier.weight"], ["projected"],
                         name="classifier_matmul"),
        helper.make_node("Add", ["projected", "classifier.bias"], ["logits"],
                         name="classifier_add"),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                          ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    return finish_model(graph)


def tensor_graph(w, b):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul"),
            helper.make_node("Add", ["xw", "B"], ["y"], name="add"),
        ],
        "hotserve_tensor_fixture",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    return finish_model(graph)


# (input name, onnx element type, numpy dtype) of the typed fixture.
TYPED_INPUTS = [
    ("f64", "DOUBLE", "float64"),
    ("i64", "INT64", "int64"),
    ("i32", "INT32", "int32"),
    ("i8", "INT8", "int8"),
    ("u8", "UINT8", "uint8"),
    ("flag", "BOOL", "bool"),
    ("half", "FLOAT16", "float16"),
]
# (output name, op, input, onnx element type, numpy dtype) of the typed fixture.
TYPED_OUTPUTS = [
    ("f64_twice", "Add", "f64", "DOUBLE", "float64"),
    ("i64_twice", "Add", "i64", "INT64", "int64"),
    ("i32_twice", "Add", "i32", "INT32", "int32"),
    ("i8_same", "Identity", "i8", "INT8", "int8"),
    ("u8_same", "Identity", "u8", "UINT8", "uint8"),
    ("flag_not", "Not", "flag", "BOOL", "bool"),
    ("half_same", "Identity", "half", "FLOAT16", "float16"),
    ("half_as_fp32", "Cast", "half", "FLOAT", "float32"),
]


def multi_graph():
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT, name="cast"),
            helper.make_node("Add", ["a", "b_float"], ["sum"], name="add"),
            helper.make_node("Mul", ["b", "TWO"], ["twice"], name="mul"),
        ],
        "hotserve_tensor_multi_fixture",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("twice", TensorProto.INT64, ["batch", 1]),
        ],
        initializer=[numpy_helper.from_array(np.array([2], dtype=np.int64), "TWO")],
    )
    return finish_model(graph)


def multi_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, 2), "a"),
                       TensorSpec(np.dtype("int64"), (-1, 1), "b")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 2), "sum"),
                        TensorSpec(np.dtype("int64"), (-1, 1), "twice")]),
    )


def make_multi_fixture():
    """The two-input, two-output tensor model (`--only tensor_multi` writes just this one)."""
    os.environ.setdefault("MLFLOW_TRACKING_URI", "file:///nonexistent-unused")
    import onnxruntime as ort

    path = save_mlflow(
        multi_graph(), FIXTURES / "tensor_multi", signature=multi_signature(),
        input_example={"a": np.array([[1.0, 2.0], [0.5, -1.0]], dtype=np.float32),
                       "b": np.array([[3], [-2]], dtype=np.int64)},
        metadata=None, fixture_name="tensor_multi")
    (path / "README.md").write_text(
        "# tensor_multi: hotserve two-input tensor fixture\n\n"
        "No tokenizer: inputs `a` float32 `[batch, 2]` and `b` int64 `[batch, 1]`; outputs\n"
        "`sum` float32 `[batch, 2]` = `a + b` and `twice` int64 `[batch, 1]` = `2 * b`. Used by\n"
        "`tests/it/conformance.rs` to compare hotserve's `/invocations` with `mlflow models serve`\n"
        "on a graph with several inputs, several outputs and two element types.\n\n"
        "Regenerate: `.venv/bin/python scripts/make_fixture_models.py --only tensor_multi`.\n")
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    a = np.array([[1.0, 2.0], [0.5, -1.0]], dtype=np.float32)
    b = np.array([[3], [-2]], dtype=np.int64)
    total, twice = session.run(None, {"a": a, "b": b})
    assert np.allclose(total, a + b) and (twice == 2 * b).all(), (total, twice)
    print(f"[tensor_multi] {path}")


def typed_graph():
    from onnx import TensorProto, helper

    nodes = []
    for out, op, inp, elem, _ in TYPED_OUTPUTS:
        if op == "Add":
            nodes.append(helper.make_node("Add", [inp, inp], [out], name=out))
        elif op == "Cast":
            nodes.append(helper.make_node("Cast", [inp], [out], to=getattr(TensorProto, elem),
                                          name=out))
        else:
            nodes.append(helper.make_node(op, [inp], [out], name=out))
    graph = helper.make_graph(
        nodes,
        "hotserve_typed_fixture",
        [helper.make_tensor_value_info(n, getattr(TensorProto, e), ["batch", 2])
         for n, e, _ in TYPED_INPUTS],
        [helper.make_tensor_value_info(n, getattr(TensorProto, e), ["batch", 2])
         for n, _, _, e, _ in TYPED_OUTPUTS],
    )
    return finish_model(graph)


def typed_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(d), (-1, 2), n) for n, _, d in TYPED_INPUTS]),
        outputs=Schema([TensorSpec(np.dtype(d), (-1, 2), n) for n, _, _, _, d in TYPED_OUTPUTS]),
    )


def make_typed_fixture():
    import onnxruntime as ort

    path = save_mlflow(typed_graph(), FIXTURES / "typed_model", signature=typed_signature(),
                       input_example=None, metadata=None, fixture_name="typed_model")
    (path / "README.md").write_text(
        "# typed_model: hotserve fixture of every served element type\n\n"
        "No tokenizer. Inputs, each `[batch, 2]`: "
        + ", ".join(f"`{n}` {d}" for n, _, d in TYPED_INPUTS) + ".\n"
        "Outputs, each `[batch, 2]`: "
        + ", ".join(f"`{n}` {d} = {op}({i})" for n, op, i, _, d in TYPED_OUTPUTS) + ".\n"
        "No input example: the validation gate warms it up with zeros. Saved with\n"
        "`mlflow.onnx.save_model` (mlflow 3.17.2).\n\n"
        "Regenerate: `.venv/bin/python scripts/make_fixture_models.py`.\n")
    sess = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {n: np.array([[1, 0], [2, 1]], dtype=d) for n, _, d in TYPED_INPUTS}
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
    assert got["f64_twice"].tolist() == [[2, 0], [4, 2]] and got["f64_twice"].dtype == np.float64
    assert got["flag_not"].tolist() == [[False, True], [False, False]]
    assert got["half_same"].dtype == np.float16 and got["half_as_fp32"].dtype == np.float32
    print(f"[check] {path.name}: {len(TYPED_OUTPUTS)} outputs of {len(TYPED_INPUTS)} types ok")


def finish_model(graph):
    import onnx
    from onnx import helper

    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="hotserve-fixtures",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------------------------
# MLflow saving
# --------------------------------------------------------------------------------------------
def fixed_uuid(name: str) -> uuid.UUID:
    return uuid.uuid5(UUID_NS, name)


def save_mlflow(model, path: Path, *, signature, input_example, metadata, fixture_name: str,
                extra_root_files: dict[str, Path] | None = None):
    import mlflow.onnx
    from mlflow.models import Model

    if path.exists():
        shutil.rmtree(path)
    # onnx.save_model (called by mlflow.onnx.save_model with save_as_external_data=True) would
    # name the external data file f"{uuid.uuid1()}.data"; pin the same-shaped name instead.
    # Tensors smaller than onnx's size_threshold (1024) stay inline, as with MLflow's default.
    location = f"{fixed_uuid(fixture_name + '/data')}.data"
    # With an input example, MLflow's pip-requirement inference runs the pyfunc flavor on it in
    # a subprocess; for the text models that logs a KeyError('input_ids') traceback (the ONNX
    # pyfunc wants token tensors, not text). That is expected and harmless: MLflow falls back
    # to the imports it captured, as it would for any user saving such a model.
    mlflow.onnx.save_model(
        model,
        str(path),
        signature=signature,
        input_example=input_example,
        metadata=metadata,
        location=location,
    )
    # onnx writes the external data file with mode 0600; git does not keep that, so make the
    # working tree look like a fresh checkout.
    for f in path.glob("*.data"):
        f.chmod(0o644)
    extra_size = 0
    for dst, src in (extra_root_files or {}).items():
        shutil.copyfile(src, path / dst)
        extra_size += (path / dst).stat().st_size
    mlmodel_path = path / "MLmodel"
    m = Model.load(str(mlmodel_path))
    m.model_uuid = fixed_uuid(fixture_name).hex
    m.utc_time_created = FIXED_TIME
    # MLflow counts every file present when it writes MLmodel (model.onnx, data, examples);
    # the tokenizer is part of the model too.
    m.model_size_bytes = (m.model_size_bytes or 0) + extra_size
    m.save(str(mlmodel_path))
    return path


def text_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]),
    )


def tensor_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, 4), "x")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 3), "y")]),
    )


def write_readme(path: Path, *, title: str, labels: list[str], seed: int, hyper: dict,
                 acc: float, ch_acc: float, n_train: int, n_heldout: int, vocab_size: int,
                 extra: str):
    text = f"""# {title}

A small but real sentiment classifier used as a hotserve test fixture. It is an MLflow model
directory written by `mlflow.onnx.save_model` (mlflow 3.17.2) plus a Hugging Face
`tokenizer.json`; generated by `scripts/make_fixture_models.py` (do not edit by hand).

- Labels (`metadata.labels`): `{labels}`; output `logits` float32 `[batch, 2]` (softmax gives
  the scores).
- Inputs: `input_ids` int64 `[batch, sequence]`, `attention_mask` int64 `[batch, sequence]`.
- Graph (opset {OPSET}, ir_version {IR_VERSION}): Gather on a `{vocab_size} x {EMBED_DIM}`
  embedding table -> masked mean pooling (Mul by mask, ReduceSum, Div by max(count, 1)) ->
  MatMul + Add. The embedding table is stored as ONNX external data (`*.data` next to
  `model.onnx`), as MLflow saves ONNX models by default.
- Tokenizer: BERT-style WordPiece (`tokenizer.json`, lowercasing BertNormalizer,
  BertPreTokenizer, `[CLS] $A [SEP]`, `[PAD]`=0, `[UNK]`=1, `[CLS]`=2, `[SEP]`=3); vocabulary
  of {vocab_size} tokens: characters and a few suffix pieces, common English words, the
  words of the labeled sentences and the VADER lexicon words with |valence| >= 2.0.
- Weights: embedding dimension 0 starts at the VADER valence / 4 (`vader_lexicon.txt` from the
  PyPI package `vaderSentiment==3.3.2`), other dimensions random (seed {seed}); embeddings
  and the linear head are then fine-tuned by logistic regression (numpy, Adam, L2 towards the
  lexicon prior; {hyper}) on {n_train} labeled sentences written in the script.
- Held-out accuracy (onnxruntime, {n_heldout} labeled sentences never used for training):
  **{acc:.1%}**.
- Harder "challenge" sentences ({len(CHALLENGE)}: negation, mild wording, words outside the
  vocabulary; reported, not asserted): {ch_acc:.1%}. It is a bag-of-words model: negation
  ("not good") is beyond it.
- `metadata.golden`: six `{{text, label}}` examples the model gets right.
{extra}
Regenerate (deterministic): `.venv/bin/python scripts/make_fixture_models.py`
(after `scripts/setup.sh test`). Reference outputs are in `tests/fixtures/expected.json`.
"""
    (path / "README.md").write_text(text)


# --------------------------------------------------------------------------------------------
# Verification with onnxruntime + tokenizers (independent of the training code)
# --------------------------------------------------------------------------------------------
def load_text_model(path: Path):
    import onnx
    import onnxruntime as ort
    import yaml
    from tokenizers import Tokenizer

    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    onnx_file = path / mlmodel["flavors"]["onnx"]["data"]
    onnx.checker.check_model(str(onnx_file), full_check=True)
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(str(path / mlmodel["metadata"]["tokenizer"]))
    return mlmodel, sess, tok


def run_text(sess, tok, texts):
    ids, mask = encode(tok, texts)
    logits = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    return ids, mask, logits, softmax(logits.astype(np.float64))


def verify_text_model(path: Path, heldout):
    mlmodel, sess, tok = load_text_model(path)
    labels = mlmodel["metadata"]["labels"]
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    assert [i.type for i in sess.get_inputs()] == ["tensor(int64)", "tensor(int64)"]
    assert [(o.name, o.type) for o in sess.get_outputs()] == [("logits", "tensor(float)")]
    golden = mlmodel["metadata"]["golden"]
    _, _, _, probs = run_text(sess, tok, [g["text"] for g in golden])
    for g, p in zip(golden, probs):
        pred = labels[int(p.argmax())]
        assert pred == g["label"], (path.name, g, p)
        assert p.max() >= 0.8, ("golden margin too small", path.name, g, p)
    texts = [t for t, _ in heldout]
    y = np.array([l for _, l in heldout])
    _, _, _, probs = run_text(sess, tok, texts)
    pred = probs.argmax(1)
    acc = float((pred == y).mean())
    wrong = [(t, labels[l], float(p[1])) for (t, l), p, pr in zip(heldout, probs, pred) if pr != l]
    print(f"[check] {path.name}: golden {len(golden)}/{len(golden)} ok; held-out accuracy "
          f"{acc:.1%} ({int((pred == y).sum())}/{len(y)})")
    for t, l, p1 in wrong:
        print(f"          miss: {t!r} (true {l}, P(positive)={p1:.3f})")
    return acc


def report_challenge(path: Path) -> float:
    mlmodel, sess, tok = load_text_model(path)
    labels = mlmodel["metadata"]["labels"]
    _, _, _, probs = run_text(sess, tok, [t for t, _ in CHALLENGE])
    y = np.array([l for _, l in CHALLENGE])
    acc = float((probs.argmax(1) == y).mean())
    print(f"[check] {path.name}: challenge accuracy {acc:.1%} (reported only)")
    for (t, l), p in zip(CHALLENGE, probs):
        if int(p.argmax()) != l:
            print(f"          miss: {t!r} (true {labels[l]}, P(positive)={p[1]:.3f})")
    return acc


def verify_tensor_model(path: Path, w, b):
    import onnxruntime as ort
    import yaml

    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    sess = ort.InferenceSession(str(path / mlmodel["flavors"]["onnx"]["data"]),
                                providers=["CPUExecutionProvider"])
    x = np.array([[1, 2, 3, 4], [0, 0, 0, 0], [-1, 0.5, 2, -3]], dtype=np.float32)
    y = sess.run(["y"], {"x": x})[0]
    assert y.dtype == np.float32 and y.shape == (3, 3)
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-6)
    print(f"[check] {path.name}: y(x) ok for {len(x)} rows")
    return x, y


# --------------------------------------------------------------------------------------------
def make_text_fixture(name, *, labels, seed, hyper, lexicon, vocab, tokenizer_file,
                      train_data, heldout, title, extra_readme):
    import pandas as pd

    tok = build_tokenizer_from_file(tokenizer_file)
    ids, mask = encode(tok, [t for t, _ in train_data])
    y = np.array([l for _, l in train_data])
    emb0 = init_embeddings(vocab, lexicon, seed)
    emb, w, b = train(emb0, ids, mask, y, seed, **hyper)
    _, _, logits = forward(emb.astype(np.float64), w, b, ids, mask)
    train_acc = float((logits.argmax(1) == y).mean())
    print(f"[train] {name}: train accuracy {train_acc:.1%} on {len(y)} sentences")

    model = text_graph(emb, w, b, f"hotserve_sentiment_{name}")
    golden = [{"text": t, "label": labels[l]} for t, l in GOLDEN_TEXTS]
    metadata = {
        "labels": labels,
        "tokenizer": "tokenizer.json",
        "max_sequence_length": MAX_SEQUENCE_LENGTH,
        "golden": golden,
    }
    example = pd.DataFrame({"text": ["I love this", "terrible, awful experience"]})
    path = save_mlflow(model, FIXTURES / name, signature=text_signature(),
                       input_example=example, metadata=metadata, fixture_name=name,
                       extra_root_files={"tokenizer.json": tokenizer_file})
    acc = verify_text_model(path, heldout)
    ch_acc = report_challenge(path)
    write_readme(path, title=title, labels=labels, seed=seed, hyper=hyper, acc=acc,
                 ch_acc=ch_acc, n_train=len(train_data), n_heldout=len(heldout),
                 vocab_size=len(vocab), extra=extra_readme)
    return acc, ch_acc


def build_tokenizer_from_file(path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def main():
    os.environ.setdefault("MLFLOW_TRACKING_URI", "file:///nonexistent-unused")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    lexicon = load_vader()
    train_data = labeled(TRAIN_POS, TRAIN_NEG)
    heldout = labeled(HELDOUT_POS, HELDOUT_NEG)
    assert not set(t.lower() for t, _ in train_data) & set(t.lower() for t, _ in heldout)
    all_texts = [t for t, _ in train_data + heldout] + [t for t, _ in GOLDEN_TEXTS]
    vocab = build_vocab(lexicon, all_texts)
    tok = build_tokenizer(vocab)
    tmp = FIXTURES / ".tokenizer.json.tmp"
    tok.save(str(tmp), pretty=True)
    print(f"[vocab] {len(vocab)} tokens; heldout={len(heldout)} train={len(train_data)}")

    try:
        acc1, ch1 = make_text_fixture(
            "sentiment", labels=["NEGATIVE", "POSITIVE"], seed=1234,
            hyper={"steps": 1000, "lam_e": 0.02, "lam_w": 1e-4},
            lexicon=lexicon, vocab=vocab, tokenizer_file=tmp, train_data=train_data,
            heldout=heldout, title="sentiment: hotserve text-classification fixture (v1)",
            extra_readme="- `sentiment_v2/` is the same pipeline with other weights and "
                         "lowercase labels.\n")
        acc2, ch2 = make_text_fixture(
            "sentiment_v2", labels=["negative", "positive"], seed=98765,
            hyper={"steps": 600, "lam_e": 0.02, "lam_w": 3e-4},
            lexicon=lexicon, vocab=vocab, tokenizer_file=tmp, train_data=train_data,
            heldout=heldout,
            title="sentiment_v2: hotserve text-classification fixture (v2, for hot reload)",
            extra_readme="- Differs from `sentiment/` (v1) in its weights (seed 98765, 600 "
                         "steps, stronger L2 on the head: softer probabilities) and its\n"
                         "  lowercase labels, so versions can be told apart by content.\n")
    finally:
        tmp.unlink(missing_ok=True)

    # Tensor model: y = x @ W + B with easy-to-check weights.
    import pandas  # noqa: F401  (mlflow imports it anyway)

    tw = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float32)
    tb = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    tpath = save_mlflow(
        tensor_graph(tw, tb), FIXTURES / "tensor_model", signature=tensor_signature(),
        input_example={"x": np.array([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]],
                                     dtype=np.float32)},
        metadata=None, fixture_name="tensor_model")
    (tpath / "README.md").write_text(
        "# tensor_model: hotserve tensor fixture\n\n"
        "No tokenizer: input `x` float32 `[batch, 4]` -> output `y` float32 `[batch, 3]`,\n"
        "`y = x @ W + B` with `W = [[1,0,0],[0,1,0],[0,0,1],[1,1,1]]`, `B = [0.1, 0.2, 0.3]`,\n"
        "i.e. `y = [x0+x3+0.1, x1+x3+0.2, x2+x3+0.3]`. Saved with `mlflow.onnx.save_model`\n"
        "(mlflow 3.17.2); the weights are smaller than onnx's external-data threshold (1024\n"
        "bytes), so unlike the sentiment fixtures this model has no `*.data` file.\n\n"
        "Regenerate: `.venv/bin/python scripts/make_fixture_models.py`.\n")
    x, y = verify_tensor_model(tpath, tw, tb)
    make_typed_fixture()
    make_multi_fixture()

    write_expected(x, y)
    print(f"[done] held-out accuracy: sentiment {acc1:.1%}, sentiment_v2 {acc2:.1%}; "
          f"challenge: {ch1:.1%}, {ch2:.1%}")


def write_expected(x, y):
    out = {"_comment": "Reference outputs computed by scripts/make_fixture_models.py with "
                       "tokenizers + onnxruntime (Python). probabilities = softmax(logits).",
           "text_models": {}}
    for name in ("sentiment", "sentiment_v2"):
        mlmodel, sess, tok = load_text_model(FIXTURES / name)
        rows = []
        for text in PROBE_TEXTS:
            ids, mask, logits, probs = run_text(sess, tok, [text])
            rows.append({
                "text": text,
                "input_ids": ids[0].tolist(),
                "attention_mask": mask[0].tolist(),
                "tokens": tok.encode(text).tokens,
                "logits": [round(float(v), 6) for v in logits[0]],
                "probabilities": [round(float(v), 6) for v in probs[0]],
                "label": mlmodel["metadata"]["labels"][int(probs[0].argmax())],
            })
        out["text_models"][name] = {"labels": mlmodel["metadata"]["labels"], "examples": rows}
    out["tensor_model"] = {"x": x.tolist(), "y": [[round(float(v), 6) for v in r] for r in y]}
    (FIXTURES / "expected.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--only", "tensor_multi"]:
        sys.exit(make_multi_fixture())
    sys.exit(main())
