"""create_future, create_task and the task factory."""

import asyncio
import contextvars
import gc
import sys

import pytest

VAR = contextvars.ContextVar("VAR", default="default")


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    fut.cancel()


def test_future_callbacks_run_on_loop(loop, run_briefly):
    fut = loop.create_future()
    calls = []
    fut.add_done_callback(lambda f: calls.append(f.result()))
    fut.set_result(5)
    assert calls == []  # scheduled with call_soon, not run inline
    run_briefly(loop)
    assert calls == [5]


def test_future_await_in_task(loop):
    fut = loop.create_future()

    async def waiter():
        return await fut

    loop.call_later(0.001, fut.set_result, "value")
    assert loop.run_until_complete(waiter()) == "value"


def test_create_task(loop):
    async def coro():
        await asyncio.sleep(0)
        return 7

    task = loop.create_task(coro())
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) == 7


def test_create_task_name(loop):
    async def coro():
        return asyncio.current_task().get_name()

    task = loop.create_task(coro(), name="my-task")
    assert task.get_name() == "my-task"
    assert loop.run_until_complete(task) == "my-task"
    task2 = loop.create_task(coro())
    assert task2.get_name().startswith("Task-")
    loop.run_until_complete(task2)


def test_create_task_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "task-ctx")

    async def coro():
        await asyncio.sleep(0)
        value = VAR.get()
        VAR.set("changed-inside")
        return value

    assert loop.run_until_complete(
        loop.create_task(coro(), context=ctx)) == "task-ctx"
    assert ctx[VAR] == "changed-inside"
    assert VAR.get() == "default"
    assert loop.run_until_complete(loop.create_task(coro())) == "default"


def test_create_task_not_a_coroutine(loop):
    with pytest.raises(TypeError):
        loop.create_task(lambda: None)


def test_create_task_cancel(loop):
    async def coro():
        await asyncio.sleep(3600)

    task = loop.create_task(coro())
    loop.call_soon(task.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert task.cancelled()


def test_current_task_and_all_tasks(loop):
    async def child():
        await asyncio.sleep(0.001)

    async def main():
        me = asyncio.current_task()
        t = asyncio.ensure_future(child())
        tasks = asyncio.all_tasks()
        await t
        return me, t, tasks

    task = loop.create_task(main())
    me, t, tasks = loop.run_until_complete(task)
    assert me is task
    assert tasks == {task, t}
    assert asyncio.all_tasks(loop) == set()


def test_task_step_context_preserved_across_awaits(loop):
    seen = []

    async def worker(tag):
        VAR.set(tag)
        for _ in range(3):
            await asyncio.sleep(0)
            seen.append((tag, VAR.get()))

    async def main():
        await asyncio.gather(worker("a"), worker("b"))

    loop.run_until_complete(main())
    assert sorted(seen) == [("a", "a")] * 3 + [("b", "b")] * 3


def test_gather_and_wait_for(loop):
    async def slow(x, delay):
        await asyncio.sleep(delay)
        return x

    async def main():
        results = await asyncio.gather(slow(1, 0.003), slow(2, 0.001),
                                       slow(3, 0))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow(4, 10), timeout=0.005)
        return results

    assert loop.run_until_complete(main()) == [1, 2, 3]


def test_task_exception_never_retrieved_is_reported(loop, run_briefly):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def fail():
        raise ValueError("lost")

    task = loop.create_task(fail())
    run_briefly(loop, 2)
    assert task.done()
    del task
    gc.collect()
    assert len(contexts) == 1
    assert contexts[0]["message"] == "Task exception was never retrieved"
    assert isinstance(contexts[0]["exception"], ValueError)


# --- task factory --------------------------------------------------------

def test_task_factory_default_none(loop):
    assert loop.get_task_factory() is None


def test_set_task_factory(loop):
    created = []

    def factory(lp, coro, **kwargs):
        assert lp is loop
        task = asyncio.Task(coro, loop=lp, **kwargs)
        created.append(task)
        return task

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def coro():
        return "made"

    task = loop.create_task(coro(), name="factory-task")
    assert created == [task]
    assert task.get_name() == "factory-task"
    assert loop.run_until_complete(task) == "made"

    # run_until_complete wraps coroutines through the factory too.
    assert loop.run_until_complete(coro()) == "made"
    assert len(created) == 2

    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    loop.run_until_complete(coro())
    assert len(created) == 2


def test_task_factory_context_argument(loop):
    received = []

    def factory(lp, coro, **kwargs):
        received.append(kwargs.get("context"))
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_task_factory(factory)
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "via-factory")

    async def coro():
        return VAR.get()

    assert loop.run_until_complete(
        loop.create_task(coro(), context=ctx)) == "via-factory"
    assert received == [ctx]


@pytest.mark.parametrize("bad", [1, "factory", object()])
def test_set_task_factory_invalid(loop, bad):
    with pytest.raises(TypeError, match="task factory must be a callable"):
        loop.set_task_factory(bad)
    assert loop.get_task_factory() is None


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="eager_task_factory is new in 3.12")
def test_eager_task_factory(loop):
    steps = []

    async def child():
        steps.append("child-start")
        await asyncio.sleep(0)
        steps.append("child-end")
        return "child"

    async def quick():
        steps.append("quick")
        return "quick"

    async def main():
        t = loop.create_task(child())
        steps.append("after-create")
        q = loop.create_task(quick())
        assert q.done()  # finished eagerly, without yielding
        return await t, q.result()

    loop.set_task_factory(asyncio.eager_task_factory)
    assert loop.get_task_factory() is asyncio.eager_task_factory
    assert loop.run_until_complete(main()) == ("child", "quick")
    assert steps == ["child-start", "after-create", "quick", "child-end"]


@pytest.mark.skipif(sys.version_info < (3, 14),
                    reason="create_task(eager_start=) is new in 3.14")
def test_create_task_eager_start(loop):
    steps = []

    async def child():
        steps.append("child")
        return 1

    async def main():
        t = loop.create_task(child(), eager_start=True)
        steps.append("after")
        assert t.done()
        return await t

    assert loop.run_until_complete(main()) == 1
    assert steps == ["child", "after"]
