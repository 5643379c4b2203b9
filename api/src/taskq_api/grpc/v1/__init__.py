"""taskq.v1, generated from api/proto/taskq/v1/taskq.proto by `make proto` (devenv/protogen.py):
the messages (taskq_pb2), the service's stub and servicer (taskq_pb2_grpc), and their type
stubs. Never edited by hand; a test fails while they differ from what the proto generates."""
