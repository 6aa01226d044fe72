import torch

from worker.trainer.frozen_linear import FrozenLinear


def test_packed_multiply_matches_a_plain_linear_layer() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 40, generator=generator)
    frozen = FrozenLinear(weight)
    for rows in (1, 7, 33):
        x = torch.randn(rows, 40, generator=generator)
        torch.testing.assert_close(frozen(x), x @ weight.T, rtol=1e-5, atol=1e-5)


def test_other_dtypes_and_autocast_take_the_plain_path() -> None:
    weight = torch.randn(16, 8)
    frozen = FrozenLinear(weight)
    x = torch.randn(3, 8)
    assert frozen(x.to(torch.bfloat16)).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert frozen(x).dtype == torch.bfloat16


def test_the_weight_gets_no_gradient() -> None:
    weight = torch.randn(16, 8, requires_grad=True)
    x = torch.randn(3, 8, requires_grad=True)
    FrozenLinear(weight)(x).sum().backward()
    assert weight.grad is None
    # d sum(x @ W.T) / dx: each row is the sum of W's rows
    assert x.grad is not None
    torch.testing.assert_close(x.grad, weight.detach().sum(0).expand(3, 8))


def test_under_autocast_a_kept_copy_gives_what_autocast_would() -> None:
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(64, 32, generator=generator)
    frozen = FrozenLinear(weight, torch.bfloat16)
    x = torch.randn(5, 32, generator=generator, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert frozen.active_weight("cpu") is frozen.low
        out = frozen(x)
        expected = torch.nn.functional.linear(x, weight)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, expected)
    out.float().sum().backward()
    autocast_x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = torch.nn.functional.linear(autocast_x, weight)
    plain.float().sum().backward()
    assert x.grad is not None and torch.equal(x.grad, autocast_x.grad)
    assert frozen.active_weight("cpu") is frozen.weight  # outside autocast: the weight itself
    torch.testing.assert_close(frozen(x.detach()), x.detach() @ weight.T, rtol=1e-5, atol=1e-5)
