"""The taskq operator: TaskQueue and WorkerPool custom resources."""
