"""One optimizer for K members: each member's update is torch's Adam (amsgrad) with its own
learning rate and step count, whether member by member or in one compiled call."""

import pytest
import torch

from gzsl.optim import MemberAdam


@pytest.mark.parametrize("one_call", [False, True], ids=["per-member", "one-call"])
def test_each_member_moves_as_its_own_adam_with_its_own_learning_rate_and_steps(one_call):
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(2, 5, 3, generator=g), torch.randn(2, 1, 3, generator=g)
    late_w, late_b = torch.randn(1, 5, 3, generator=g), torch.randn(1, 1, 3, generator=g)
    params = [torch.nn.Parameter(w.clone()), torch.nn.Parameter(b.clone())]
    opt = MemberAdam(params, lr=[1e-2, 3e-3], one_call=one_call)
    alone = [[torch.nn.Parameter(t[k].clone()) for t in (w, b)] for k in range(2)]
    alone_opts = [torch.optim.Adam(p, lr=lr, amsgrad=True) for p, lr in zip(alone, (1e-2, 3e-3))]

    def step(grads):
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        opt.step()
        for k, (ps, o) in enumerate(zip(alone, alone_opts)):
            for p, gr in zip(ps, grads):
                p.grad = gr[k].clone()
            o.step()

    for i in range(3):
        step([torch.randn(2, 5, 3, generator=g), torch.randn(2, 1, 3, generator=g)])
        if i == 1:  # a third member joins after two steps, the first leaves
            for p, t in zip(params, (late_w, late_b)):
                p.data = torch.cat([p.data, t])
            opt.add_members([5e-2])
            alone.append([torch.nn.Parameter(t[0].clone()) for t in (late_w, late_b)])
            alone_opts.append(torch.optim.Adam(alone[-1], lr=5e-2, amsgrad=True))
            for p in params:
                p.data = p.data[[1, 2]]
            opt.select([1, 2])
            del alone[0], alone_opts[0]
    assert opt.one_call == one_call  # the compiled update ran (it falls back only when it cannot compile)
    assert opt.steps.tolist() == [3.0, 1.0] and opt.lr == [3e-3, 5e-2]
    for k in range(2):
        assert (params[0][k] - (w[1] if k == 0 else late_w[0])).abs().max() > 1e-3  # it did move
        for p, q in zip(params, alone[k]):
            torch.testing.assert_close(p[k], q, atol=1e-7, rtol=0)


def test_an_update_that_cannot_compile_warns_once_and_goes_on_member_by_member(monkeypatch):
    import gzsl.optim

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here\nmore lines")
    monkeypatch.setattr(gzsl.optim, "compiled_update", lambda: broken)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 4, 2, generator=g)
    p, alone = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    opt = MemberAdam([p], lr=[1e-2, 2e-2, 3e-2], one_call=True)
    ref = MemberAdam([alone], lr=[1e-2, 2e-2, 3e-2], one_call=False)
    with pytest.warns(UserWarning, match="did not compile \\(RuntimeError: no compiler here\\); updating member by member") as record:
        for _ in range(2):
            p.grad = alone.grad = torch.randn(3, 4, 2, generator=g)
            opt.step()
            ref.step()
    assert sum("did not compile" in str(r.message) for r in record) == 1
    assert not opt.one_call and opt.steps.tolist() == [2.0, 2.0, 2.0]
    assert torch.equal(p, alone) and not torch.equal(p, w)
