"""HF generation: n samples per prompt, greedy determinism, stop strings and finish reasons."""

import pytest

from reasontrain.distributed import shard
from reasontrain.generation.base import SamplingParams, cut_at_stop
from reasontrain.generation.hf import generate


def test_n_samples_and_finish_reasons(tokenizer, tiny_model):
    prompts = ["Q: 1+1\nA: ", "Q: a much longer question here\nA: "]
    out = generate(tiny_model, tokenizer, prompts, SamplingParams(n=3, temperature=1.0, max_new_tokens=12),
                   batch_size=2, progress=False)
    assert [len(row) for row in out] == [3, 3]
    for row in out:
        for c in row:
            assert c.finish_reason in ("stop", "length")
            assert c.num_tokens <= 12
            assert c.truncated == (c.finish_reason == "length")
            if c.finish_reason == "length":
                assert c.num_tokens == 12


def test_greedy_is_deterministic_and_batch_independent(tokenizer, tiny_model):
    prompts = ["Q: 1+1\nA: ", "Q: 23 x 4\nA: ", "Q: x\nA: "]
    p = SamplingParams(max_new_tokens=10)
    batched = generate(tiny_model, tokenizer, prompts, p, batch_size=3, progress=False)
    single = [generate(tiny_model, tokenizer, [q], p, batch_size=1, progress=False)[0] for q in prompts]
    assert [r[0].text for r in batched] == [r[0].text for r in single]


def test_stop_strings_cut_the_text_and_mark_stop(tokenizer, tiny_model):
    prompts = ["Q: 1+1\nA: "]
    free = generate(tiny_model, tokenizer, prompts, SamplingParams(max_new_tokens=20), progress=False)[0][0]
    assert len(free.text) >= 4
    stop = free.text[2:4]
    cut = generate(tiny_model, tokenizer, prompts, SamplingParams(max_new_tokens=20, stop=(stop,)),
                   progress=False)[0][0]
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[:free.text.index(stop)]


def test_cut_at_stop_takes_the_earliest():
    assert cut_at_stop("abc\n\nQ: next", ("Q:", "\n\n")) == ("abc", True)
    assert cut_at_stop("abc", ("zz",)) == ("abc", False)


@pytest.mark.parametrize("n,world", [(10, 3), (2, 4), (7, 1)])
def test_shards_cover_everything_in_order(n, world):
    items = list(range(n))
    assert [x for r in range(world) for x in shard(items, r, world)] == items
