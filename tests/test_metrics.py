import torch

from fedsim.fedattn.metrics import hidden_deviation, kl_per_position, lcs_length, token_overlap, top1_agreement


def test_identical_inputs_are_perfect():
    logits = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(0))
    assert kl_per_position(logits, logits).abs().max() < 1e-12
    assert torch.equal(top1_agreement(logits, logits), torch.ones(2, dtype=torch.float64))
    assert hidden_deviation(logits, logits) == 0.0
    assert token_overlap([1, 2, 3], [1, 2, 3]) == 1.0


def test_metrics_move_the_right_way():
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(1, 50, 11, generator=g)
    near = ref + 0.1 * torch.randn(1, 50, 11, generator=g)
    far = ref + 2.0 * torch.randn(1, 50, 11, generator=g)
    assert kl_per_position(ref, near).mean() < kl_per_position(ref, far).mean()
    assert top1_agreement(ref, near) >= top1_agreement(ref, far)
    assert hidden_deviation(ref, near) < hidden_deviation(ref, far)


def test_token_overlap_is_lcs_f1():
    assert lcs_length([1, 2, 3, 4], [1, 3, 4, 5]) == 3
    assert token_overlap([1, 2, 3, 4], [1, 3, 4, 5]) == 0.75
    assert token_overlap([1, 2], []) == 0.0
    assert token_overlap([], []) == 1.0
