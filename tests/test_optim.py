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

    def broken(*args, **kwargs):  # what torch.compile raises when the backend fails: before any update
        raise torch._dynamo.exc.InternalTorchDynamoError("no compiler here\nmore lines")
    monkeypatch.setattr(gzsl.optim, "compiled_update", lambda: broken)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 4, 2, generator=g)
    p, alone = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    opt = MemberAdam([p], lr=[1e-2, 2e-2, 3e-2], one_call=True)
    ref = MemberAdam([alone], lr=[1e-2, 2e-2, 3e-2], one_call=False)
    with pytest.warns(UserWarning, match="^one-call-adam: did not compile \\(InternalTorchDynamoError: no compiler here\\); "
                                         "running it eagerly in this process$") as record:
        for _ in range(2):
            p.grad = alone.grad = torch.randn(3, 4, 2, generator=g)
            opt.step()
            ref.step()
    assert sum("did not compile" in str(r.message) for r in record) == 1
    assert not opt.one_call and opt.steps.tolist() == [2.0, 2.0, 2.0]
    assert torch.equal(p, alone) and not torch.equal(p, w)


def test_an_error_while_the_update_runs_is_raised_not_redone_member_by_member(monkeypatch):
    """An error from the compiled update once it runs (an out-of-memory in a kernel) may come after
    in-place work on some parameters: redoing the step member by member would update them twice.
    (Here the update has passed its first-use check: tests/test_self_check.py has a failure in it.)"""
    import gzsl.optim
    from gzsl import fastpaths

    monkeypatch.setitem(fastpaths._verdicts, fastpaths.ONE_CALL_ADAM, "ok")
    def fails_halfway(params, grads, *rest):
        params[0].sub_(1.0)  # the first tensor updated, then the device fails
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(gzsl.optim, "compiled_update", lambda: fails_halfway)
    w = torch.zeros(2, 3)
    p = torch.nn.Parameter(w.clone())
    opt = MemberAdam([p], lr=[1e-2, 1e-2], one_call=True)
    p.grad = torch.ones(2, 3)
    with pytest.raises(torch.OutOfMemoryError):
        opt.step()
    assert torch.equal(p.detach(), w - 1.0)  # once, not again by a member-by-member retry
    assert opt.one_call


def test_pack_sizes_1_to_12_compile_the_one_call_update_at_most_twice(monkeypatch):
    """The member axis is dynamic: a pack that grows and shrinks does not recompile per size (nor
    reach torch's recompile limit at K = 9, past which the update would run uncompiled while
    one_call still said True). Counted with a backend that runs the traced graph as it is."""
    import gzsl.optim

    compiles = []

    def counting(graph, example_inputs):
        compiles.append(len(example_inputs))
        return graph.forward
    torch._dynamo.reset()
    counted = torch.compile(gzsl.optim.adam_update, dynamic=True, backend=counting)
    monkeypatch.setattr(gzsl.optim, "compiled_update", lambda: counted)
    for k in range(1, 13):
        params = [torch.nn.Parameter(torch.randn(k, 5, 3)), torch.nn.Parameter(torch.randn(k, 1, 3))]
        ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
        opt, per_member = MemberAdam(params, lr=[1e-3] * k, one_call=True), MemberAdam(ref, lr=[1e-3] * k, one_call=False)
        for p, r in zip(params, ref):
            p.grad = r.grad = torch.randn_like(p)
        opt.step()
        per_member.step()
        assert opt.one_call and all(torch.allclose(p, r, rtol=1e-6, atol=1e-7) for p, r in zip(params, ref))
    assert 1 <= len(compiles) <= 2
