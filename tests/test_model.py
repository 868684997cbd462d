"""The model's member axis: K members in one nn.Module, each computing what its own model would."""

import torch

from gzsl.model import DisentangledVAE, ModelConfig, noise

SMALL = ModelConfig(feature_dim=12, semantic_dim=5, num_train_classes=3, latent_size=4, visual_encoder_hidden=8,
                    visual_decoder_hidden=7, semantic_encoder_hidden=6, semantic_decoder_hidden=9)


def one(seed: int, **overrides) -> DisentangledVAE:
    config = ModelConfig(**{**SMALL.__dict__, **overrides})
    return DisentangledVAE(config, generator=torch.Generator().manual_seed(seed))


def member_noise(model: DisentangledVAE, rows: int, width: int, seed: int) -> torch.Tensor:
    """(1, sites, rows, ·) noise of a one-member model, zero-padded to `width` when per dimension."""
    c = model.config
    eps = noise(c.sampling, (1, model.noise_sites, rows), c.latent_size, torch.Generator().manual_seed(seed))
    return eps if eps.shape[-1] == 1 else torch.nn.functional.pad(eps, (0, width - c.latent_size))


def test_weights_are_parameters_with_a_member_axis_that_state_dict_and_to_carry():
    model = one(0)
    params = dict(model.named_parameters())
    assert params["encoder_v.hidden.weight"].shape == (1, 12, 8)
    assert params["encoder_v.heads.weight"].shape == (1, 8, 16)  # mu_t, logvar_t, mu_p, logvar_p
    assert params["classifier_s.bias"].shape == (1, 1, 3)
    pack = one(1).widen(6).extend(one(2, latent_size=6, sampling="textbook"))
    assert pack.encoder_v.heads.weight.shape == (2, 8, 24)
    copy = one(3, latent_size=6).extend(one(4, latent_size=6, sampling="textbook"))
    copy.load_state_dict(pack.to("cpu").state_dict())
    for (name, p), q in zip(pack.state_dict().items(), copy.state_dict().values()):
        assert torch.equal(p, q), name
    assert pack.sigma_scale.view(-1).tolist() == [1.0, 0.5]
    assert pack.latent_mask.sum((1, 2)).tolist() == [4.0, 6.0]


def test_a_padded_member_computes_what_its_own_model_computes():
    """Members of latent 4 (CADA-VAE's sampling) and 2 (textbook) padded to 6: each one's outputs
    are its own model's, and its extra latent dimensions hold exactly 0."""
    alone = [one(0), one(1, latent_size=2, sampling="textbook")]
    pack = alone[0].member(0).widen(6).extend(alone[1].member(0).widen(6))
    x, c = torch.rand(5, 12), torch.rand(5, 5)
    eps = [member_noise(m, 5, 6, seed=k) for k, m in enumerate(alone)]
    out = pack(x, c, torch.cat([e.expand(-1, -1, -1, 6) for e in eps]))
    for k, (model, e) in enumerate(zip(alone, eps)):
        L = model.config.latent_size
        own = model(x, c, e[..., :L])
        for name in ("x_hat", "x_from_s", "c_hat", "c_from_v"):
            torch.testing.assert_close(getattr(out, name)[k], getattr(own, name)[0], atol=1e-6, rtol=0)
        for name in ("z_t_v", "z_p_s"):
            torch.testing.assert_close(getattr(out, name)[k, :, :L], getattr(own, name)[0], atol=1e-6, rtol=0)
            assert torch.equal(getattr(out, name)[k, :, L:], torch.zeros(5, 6 - L))
        assert torch.equal(out.v.mu_p[k, :, L:], torch.zeros(5, 6 - L))


def test_members_leave_and_come_back_out_as_their_own_models():
    models = [one(0), one(1, latent_size=2), one(2, latent_size=3, disentangle=True)]
    pack = models[0].member(0)
    for m in models[1:]:
        pack.extend(m.member(0).widen(4))
    pack.select([2, 0])
    assert [m.latent_size for m in pack.members] == [3, 4]
    for k, model in zip((0, 1), (models[2], models[0])):
        back = pack.member(k)
        assert back.config == model.config and back.latent_mask.shape == (1, 1, model.config.latent_size)
        for (name, p), q in zip(back.named_parameters(), model.parameters()):
            assert torch.equal(p, q), name
    assert len(pack.select([]).members) == 0 and pack.encoder_s.heads.weight.shape == (0, 6, 16)


def test_member_linear_gradients_are_autograds_and_reuse_their_buffers():
    from gzsl.layers import MemberLinear

    torch.manual_seed(0)
    layer = MemberLinear(5, 3)
    layer.reset_parameters(gain=1.0)
    layer.assign(torch.randn(4, 5, 3), torch.randn(4, 1, 3))
    x, x_ref = torch.randn(4, 7, 5, requires_grad=True), torch.zeros(4, 7, 5, requires_grad=True)
    with torch.no_grad():
        x_ref.copy_(x)
    w, b = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()

    (layer(x) ** 2).sum().backward()
    (torch.baddbmm(b, x_ref, w) ** 2).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-6)  # the input's gradient flows as autograd's
    assert torch.allclose(layer.weight.grad, w.grad, atol=1e-6)
    assert torch.allclose(layer.bias.grad, b.grad, atol=1e-6)
    first = layer.weight.grad.data_ptr()

    (layer(x) ** 2).sum().backward()  # .grad set: added to, as autograd does
    assert torch.allclose(layer.weight.grad, 2 * w.grad, atol=1e-5)
    layer.zero_grad(set_to_none=True)
    (layer(x) ** 2).sum().backward()  # None again: written into the same buffer, not a new one
    assert layer.weight.grad.data_ptr() == first
    assert torch.allclose(layer.weight.grad, w.grad, atol=1e-6)
