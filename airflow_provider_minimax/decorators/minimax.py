"""``@task.minimax``: a TaskFlow function returns the prompt (or messages), MiniMax answers it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    SET_DURING_EXECUTION,
    DecoratedOperator,
    KeywordParameters,
    context_merge,
    task_decorator_factory,
)

from airflow_provider_minimax.operators.chat import MiniMaxChatOperator
from airflow_provider_minimax.version_compat import AIRFLOW_V_3_1_PLUS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, TaskDecorator


class MiniMaxDecoratedOperator(DecoratedOperator, MiniMaxChatOperator):
    """Run the decorated function for the prompt, then :class:`MiniMaxChatOperator` on it.

    The function returns a non-empty string (the prompt) or a non-empty list of message dicts.
    What it returns is sent as is: it is not rendered as a Jinja template, so text holding
    ``{{`` reaches the model unchanged.

    :param python_callable: the decorated function.
    :param op_args: positional arguments for the function (templated).
    :param op_kwargs: keyword arguments for the function (templated).
    :param kwargs: any :class:`MiniMaxChatOperator` parameter but ``prompt``/``messages``.
    """

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *MiniMaxChatOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **MiniMaxChatOperator.template_fields_renderers,
    }
    # No file lookup: a function argument such as "notes.md" is data, not a template path.
    template_ext: Sequence[str] = ()
    custom_operator_name: str = "@task.minimax"
    # Show the prompt the function built in "Rendered Templates".
    overwrite_rtif_after_execution: bool = True

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        for name in ("prompt", "messages"):
            if name in kwargs:
                raise TypeError(f"@task.minimax takes no {name!r}: the decorated function returns it")
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            prompt=SET_DURING_EXECUTION,
            **kwargs,
        )

    if not AIRFLOW_V_3_1_PLUS:
        # Airflow 3.0's DecoratedOperator.execute reads self.xcom_push, which only core's BaseOperator
        # has there (the standard provider bases its decorators on it on 3.0 for the same reason).

        @staticmethod
        def xcom_push(context: Context, key: str, value: Any) -> None:
            """Push an XCom through the task instance (Airflow 3.0 only).

            :param context: the task context.
            :param key: the XCom key.
            :param value: the value.
            """
            context["ti"].xcom_push(key=key, value=value)

    def execute(self, context: Context) -> Any:
        """Call the function for the prompt or messages, then ask MiniMax."""
        context_merge(context, self.op_kwargs)
        # Not self.determine_kwargs: DecoratedOperator has that method only from Airflow 3.2.
        kwargs = KeywordParameters.determine(self.python_callable, self.op_args, context).unpacking()
        value = self.python_callable(*self.op_args, **kwargs)
        if isinstance(value, str) and value.strip():
            self.prompt, self.messages = value, None
        elif (
            isinstance(value, Sequence)
            and not isinstance(value, str)
            and value
            and all(isinstance(m, Mapping) for m in value)
        ):
            self.prompt, self.messages = None, list(value)
        else:
            raise TypeError(
                f"The @task.minimax function {self.python_callable.__name__!r} must return a non-empty "
                f"string (the prompt) or a non-empty list of message dicts, got {value!r:.100}"
            )
        return super().execute(context)


def minimax_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """Turn a function that returns a prompt into a MiniMax task: ``@task.minimax(...)``.

    :param python_callable: the function to decorate.
    :param multiple_outputs: with ``output_type``, push each field of the answer as its own XCom.
    :param kwargs: :class:`MiniMaxChatOperator` parameters (``conn_id``, ``system_prompt``,
        ``images``, ``output_type``, ``tools``, ``stream``...) and any BaseOperator argument.
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=MiniMaxDecoratedOperator,
        **kwargs,
    )
