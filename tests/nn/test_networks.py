import torch

from robot_rl.nn.networks import EnsembleLinear, EnsembleMLP, GaussianActor, random_shift
from robot_rl.rl.iql import expectile_loss


def test_expectile_loss_is_asymmetric():
    pos, neg = torch.tensor([2.0]), torch.tensor([-2.0])
    assert torch.isclose(expectile_loss(pos, 0.7), torch.tensor(0.7 * 4))
    assert torch.isclose(expectile_loss(neg, 0.7), torch.tensor(0.3 * 4))
    assert torch.isclose(expectile_loss(torch.tensor([1.0, -1.0]), 0.5), torch.tensor(0.5))


def test_ensemble_linear_matches_independent_layers():
    torch.manual_seed(0)
    layer = EnsembleLinear(3, 5, 4)
    x = torch.randn(3, 7, 5)
    out = layer(x)
    for e in range(3):
        ref = x[e] @ layer.weight[e] + layer.bias[e]
        assert torch.allclose(out[e], ref, atol=1e-6)


def test_ensemble_members_are_independent():
    torch.manual_seed(0)
    net = EnsembleMLP(2, 3, (8,), 1)
    x = torch.randn(5, 3)
    out = net(x)
    assert out.shape == (2, 5, 1)
    assert not torch.allclose(out[0], out[1])  # different initial weights
    out[0].sum().backward()
    assert net.layers[0].weight.grad[1].abs().sum() == 0  # member 1 gets no gradient from member 0's output


def test_gaussian_actor_log_prob_matches_torch_normal():
    torch.manual_seed(0)
    actor = GaussianActor(3, 2, (16,))
    obs, act = torch.randn(4, 3), torch.rand(4, 2) * 2 - 1
    mean, std = actor(obs)
    ref = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(act).sum(-1)
    assert torch.allclose(actor.log_prob(obs, act), ref, atol=1e-5)
    assert actor.act(obs).abs().max() <= 1.0
    assert actor.act(obs, deterministic=False).abs().max() <= 1.0


def test_random_shift_keeps_shape_and_content_shifted():
    img = torch.arange(2 * 8 * 8 * 3, dtype=torch.uint8).reshape(2, 8, 8, 3)
    g = torch.Generator().manual_seed(0)
    out = random_shift(img, pad=2, generator=g)
    assert out.shape == img.shape and out.dtype == torch.uint8
    same = random_shift(img, pad=0)
    assert torch.equal(same, img)
