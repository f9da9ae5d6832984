"""What ``MiniMaxBatchOperator`` does apart from the Airflow glue.

``options`` (the knobs, checked first), ``prompts`` (each row's prompt and image), ``task_mode``
and ``chat_mode`` (the rows through either API), ``chat`` (the concurrent, rate-controlled chat
runner), ``streamed`` (file to file, window by window), ``publish`` (the end of a batch),
``rows`` (one result per row and the manifest), ``io`` (reading input, writing JSONL),
``progress`` (the progress log line) and ``checkpoint`` (finished chat rows kept across tries).
"""
