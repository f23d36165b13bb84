"""One participant's view of FedAttn (what each process of the real runtime computes) equals the batched
simulator's math: same last logits, same greedy continuation, for every dense schedule kind."""

import pytest
import torch

from fedsim.fedattn.decode import generate
from fedsim.fedattn.participant import Decoder, ParticipantPrefill, Slice, senders_at
from fedsim.fedattn.partition import Partition, partition_pieces
from fedsim.fedattn.prefill import FedAttnPrefill
from fedsim.fedattn.schedule import make_schedule


def lockstep(model, tokens, part: Partition, schedule) -> list[ParticipantPrefill]:
    """Every participant's prefill, exchanging K/V by hand exactly as the runtime's transport does."""
    sizes = part.sizes()
    offsets = [sum(sizes[:p]) for p in range(part.n_participants)]
    slices = [Slice(o, n) for o, n in zip(offsets, sizes, strict=True)]
    parts = [ParticipantPrefill(model, tokens[o:o + n], p, slices, schedule)
             for p, (o, n) in enumerate(zip(offsets, sizes, strict=True))]
    for layer in range(model.cfg.n_layers):
        kind = schedule.kind(layer)
        sent = [pp.start_block() for pp in parts]
        for p, pp in enumerate(parts):
            pp.finish_block({s: sent[s] for s in senders_at(kind, p, part.n_participants, part.publisher)})
    return parts


def decode(parts: list[ParticipantPrefill], responder: int, publisher: int, n: int) -> list[int]:
    token = int(parts[publisher].last_logits().argmax())  # the first token comes from the prompt's last position
    out, dec = [token], Decoder(parts[responder])
    for _ in range(n - 1):
        token = int(dec.step(token).argmax())
        out.append(token)
    return out


@pytest.mark.parametrize("schedule_kw", [
    {"H": 1}, {"H": 2}, {"H": 4, "phase": "last"}, {"H": 8}, {"H": 3, "placement": "deep_half"},
    {"H": 4, "publisher_H": 2}, {"H": 2, "placement": "none"},
])
@pytest.mark.parametrize("n", [2, 3])
def test_each_participant_alone_equals_the_batched_math(tiny_model, schedule_kw, n):
    tokens = torch.randint(0, tiny_model.cfg.vocab_size, (37,), generator=torch.Generator().manual_seed(n))
    part = partition_pieces([37], ["question"], n, "contiguous")
    schedule = make_schedule(8, **schedule_kw)
    batched = FedAttnPrefill(tiny_model, tokens, part, schedule).run()
    parts = lockstep(tiny_model, tokens, part, schedule)
    assert (parts[part.publisher].last_logits() - batched.last_logits()).abs().max() < 1e-4
    for responder in range(n):
        assert decode(parts, responder, part.publisher, 8) == generate(batched, [responder], 8)[0]
    for layer in range(8):  # each holds exactly the prompt keys the simulator says it sees
        for p in range(n):
            assert parts[p].held[layer][2].tolist() == batched.visible_keys(layer)[p].nonzero().flatten().tolist()


def test_one_participant_is_the_plain_model(tiny_model):
    tokens = torch.randint(0, tiny_model.cfg.vocab_size, (20,), generator=torch.Generator().manual_seed(5))
    (solo,) = lockstep(tiny_model, tokens, partition_pieces([20], ["question"], 1, "contiguous"),
                       make_schedule(8, H=5))
    assert (solo.last_logits() - tiny_model(tokens[None])[0, -1]).abs().max() < 1e-4


def test_steps_out_of_order_are_refused(tiny_model):
    pp = ParticipantPrefill(tiny_model, [1, 2, 3], 0, [Slice(0, 3)], make_schedule(8, H=1))
    with pytest.raises(RuntimeError, match="finish_block before start_block"):
        pp.finish_block({})
    pp.start_block()
    with pytest.raises(RuntimeError, match="start_block out of order"):
        pp.start_block()
    with pytest.raises(ValueError, match="holds 2 tokens"):
        ParticipantPrefill(tiny_model, [1, 2], 0, [Slice(0, 3)], make_schedule(8, H=1))
