"""The GGUF-built tokenizer must give the ids the model was trained on: checked against transformers'
tokenizer built from the same GGUF, and by hand where transformers departs from llama.cpp."""

import pytest

from fedsim.common.errors import UserError
from fedsim.models.catalog import locate_model_file
from fedsim.models.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

TEXTS = [
    "12345",
    "Born in 1987, she paid $3,141.59 for 2 items (x=12+34).",
    "héllo wörld, naïve café: 世界 🤖 Ωμέγα — ñ",
    "a  b   c\n\n\nd\t\te \n ",
    "  leading and trailing  ",
    "def f(x):\n    return x**2  # square\n",
    "it's we'll THEY'RE I'M",
    "<|im_start|>user\nWhat is 7*8?<|im_end|>\n<|im_start|>assistant\n",
    "",
]
CHATS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name a prime."}],
]
MODELS = ["smollm2-135m-instruct", pytest.param("qwen2.5-0.5b", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=MODELS)
def pair(request):
    """(our tokenizer, transformers' tokenizer) for one model file."""
    try:
        path = locate_model_file(request.param)
    except UserError as e:
        pytest.skip(str(e))
    ref = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return Tokenizer.from_gguf(path), ref


@pytest.mark.parametrize("text", TEXTS)
def test_ids_match_transformers(pair, text):
    tok, ref = pair
    assert tok.encode(text) == ref.encode(text)


def test_decode_round_trips(pair):
    tok, _ = pair
    for text in TEXTS:
        assert tok.decode(tok.encode(text), skip_special=False) == text
    assert tok.decode(tok.encode("<|im_start|>user\nhi<|im_end|>")) == "user\nhi"


def test_digits_are_single_tokens_and_chat_tokens_single_ids(pair):
    tok, ref = pair
    assert tok.encode("2024") == [tok.encode(d)[0] for d in "2024"]
    for special in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert tok.encode(special) == [ref.convert_tokens_to_ids(special)]
    assert tok.eos_ids == (ref.eos_token_id,)  # the model's eos_token_id alone ends generation
    assert tok.vocab_size == len(ref.get_vocab())


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_matches_transformers(pair, add_generation_prompt):
    tok, ref = pair
    for messages in CHATS:
        ours = tok.render_chat(messages, add_generation_prompt=add_generation_prompt)
        assert ours == ref.apply_chat_template(messages, tokenize=False,
                                               add_generation_prompt=add_generation_prompt)


def test_smollm_isolates_every_numeric_char_like_llama_cpp():
    # llama.cpp's "smollm" pre-tokenizer splits every \p{N} char off first, so " ²" is " " + "²".
    # transformers' GGUF path skips that step and cuts the UTF-8 bytes of "²" apart instead.
    tok = Tokenizer.from_gguf(locate_model_file("smollm2-135m-instruct"))
    assert tok.encode(" ²") == tok.encode(" ") + tok.encode("²")
    assert len(tok.encode("²")) == 1 and tok.encode("x ½") == tok.encode("x") + tok.encode(" ") + tok.encode("½")


def test_smollm_special_ids():
    tok = Tokenizer.from_gguf(locate_model_file("smollm2-135m-instruct"))
    # generation stops only on the GGUF's eos_token_id (<|im_end|>), as in the authors' code;
    # <|endoftext|> (0) does not stop it
    assert (tok.bos_id, tok.eos_ids, tok.vocab_size) == (1, (2,), 49152)
    assert tok.encode("hi") == [6004]  # add_bos_token is false in this GGUF
