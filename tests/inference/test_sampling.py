"""``sample_next``: a seeded row draws from its own generator only, and costs the batch nothing of its own on
the device; the draw follows the row's nucleus."""

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from inference.sampling import sample_next


def own(seed):
    return torch.Generator().manual_seed(seed)


def test_a_seeded_row_draws_from_its_own_generator_only():
    torch.manual_seed(0)
    logits = torch.randn(4, 5000)
    temps, tops = [1.0, 1.0, 0.8, 0.0], [1.0, 0.9, 0.95, 1.0]
    batch = [sample_next(logits, temps, tops, [None, None, own(7), None])[2] for _ in range(3)]
    solo = sample_next(logits[2:3], temps[2:3], tops[2:3], [own(7)])[0]
    assert len(set(int(t) for t in batch)) == 1 and int(batch[0]) == int(solo)  # beside any rows, any draws
    draws = {int(sample_next(logits[2:3], temps[2:3], tops[2:3], [own(seed)])[0]) for seed in range(8)}
    assert len(draws) > 1  # the seed matters
    unseeded = {int(sample_next(logits[:1], temps[:1], tops[:1])[0]) for _ in range(8)}
    assert len(unseeded) > 1  # the shared generator moves on
    greedy_row = sample_next(logits, temps, tops, [own(1), own(2), own(3), own(4)])[3]
    assert int(greedy_row) == int(logits[3].argmax())  # temperature 0 stays greedy, seed or not
    # Two near-equal tokens trading places in the last bits (a row batched or alone): the same seed draws the
    # same token, because the draw is over the vocabulary, not over the probabilities sorted
    row = torch.full((1, 100), -30.0)
    flipped = row.clone()
    row[0, 10], row[0, 20] = 1.0, 1.0 + 1e-6
    flipped[0, 10], flipped[0, 20] = 1.0 + 1e-6, 1.0
    assert [int(sample_next(row, [1.0], [1.0], [own(s)])[0]) for s in range(12)] == [
        int(sample_next(flipped, [1.0], [1.0], [own(s)])[0]) for s in range(12)
    ]


def test_the_draw_follows_the_nucleus_and_never_leaves_it():
    """Probabilities 0.5, 0.3, 0.2 with top_p 0.75 keep the first two (renormalised: 0.625, 0.375)."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(4000, 1)
    picks = collections.Counter(sample_next(logits, [1.0] * 4000, [0.75] * 4000, [own(1)] + [None] * 3999).tolist())
    assert set(picks) == {0, 1}
    assert abs(picks[0] / 4000 - 0.625) < 0.04  # ~5 standard deviations
    whole = collections.Counter(sample_next(logits, [1.0] * 4000, [1.0] * 4000).tolist())
    assert abs(whole[2] / 4000 - 0.2) < 0.035


class DeviceOps(TorchDispatchMode):
    """Every operation that runs on ``device``, by name."""

    def __init__(self, device):
        super().__init__()
        self.device, self.ops = torch.device(device), collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) and t.device == self.device for t in torch.utils._pytree.tree_leaves(out)):
            self.ops[func.overloadpacket.__name__] += 1
        return out


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_seeded_rows_cost_the_batch_no_device_work_of_their_own(top_p):
    """On the meta device (shapes, no data: reading a value from it raises, as a device sync would cost), a
    batch of eight rows runs the same device operations whether none, three or all eight rows are seeded,
    and never multinomial: a seeded row adds one number drawn on the host, nothing on the device."""
    logits = torch.empty(8, 1000, device="meta")
    counts = []
    for seeded in (0, 3, 8):
        generators = [own(s) for s in range(seeded)] + [None] * (8 - seeded)
        with DeviceOps("meta") as device:
            out = sample_next(logits, [1.0] * 7 + [0.0], [top_p] * 8, generators)
        assert out.shape == (8,) and out.device.type == "meta"
        counts.append(device.ops)
    assert counts[0] == counts[1] == counts[2], counts
    assert "multinomial" not in counts[0] and "_local_scalar_dense" not in counts[0]
    assert counts[0]["_to_copy"] <= 1  # the rows' values go to the device in one copy per step
