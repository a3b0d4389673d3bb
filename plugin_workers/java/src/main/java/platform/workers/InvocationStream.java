package platform.workers;

import com.google.protobuf.ByteString;
import io.grpc.stub.ServerCallStreamObserver;
import platform.ppp.v1.Completed;
import platform.ppp.v1.Failed;
import platform.ppp.v1.Log;
import platform.ppp.v1.PluginMessage;
import platform.ppp.v1.Progress;
import platform.ppp.v1.ResultChunk;

/**
 * The reply stream of one Invoke call, enforcing the PPP rule that exactly one terminal
 * message (Completed or Failed) ends it and nothing follows.
 *
 * <p>Thread-safe: a handler may report progress from its own threads, and gRPC's observer must
 * not be called concurrently. Messages after the end, or after the caller cancelled, are
 * dropped instead of failing the handler.
 */
final class InvocationStream {
    /** Results above this size go out as ResultChunk messages (gRPC's default limit is 4 MiB). */
    static final int CHUNK_BYTES = 1024 * 1024;

    private final ServerCallStreamObserver<PluginMessage> observer;
    private boolean ended;
    private volatile boolean cancelled;

    InvocationStream(ServerCallStreamObserver<PluginMessage> observer) {
        this.observer = observer;
        // Without a cancel handler gRPC throws from onNext once the caller has gone away.
        observer.setOnCancelHandler(() -> cancelled = true);
    }

    boolean isCancelled() {
        return cancelled;
    }

    void progress(double percent, String message) {
        send(PluginMessage.newBuilder()
                .setProgress(Progress.newBuilder().setPercent(percent).setMessage(message))
                .build());
    }

    void log(Log.Level level, String message) {
        send(PluginMessage.newBuilder()
                .setLog(Log.newBuilder().setLevel(level).setMessage(message))
                .build());
    }

    synchronized void complete(byte[] output) {
        if (output.length <= CHUNK_BYTES) {
            end(PluginMessage.newBuilder()
                    .setCompleted(Completed.newBuilder().setOutput(ByteString.copyFrom(output)))
                    .build());
            return;
        }
        for (int index = 0, start = 0; start < output.length; index++, start += CHUNK_BYTES) {
            ByteString data = ByteString.copyFrom(output, start, Math.min(CHUNK_BYTES, output.length - start));
            send(PluginMessage.newBuilder()
                    .setResultChunk(ResultChunk.newBuilder().setData(data).setIndex(index))
                    .build());
        }
        end(PluginMessage.newBuilder().setCompleted(Completed.getDefaultInstance()).build());
    }

    synchronized void fail(String code, String message) {
        end(PluginMessage.newBuilder()
                .setFailed(Failed.newBuilder().setCode(code).setMessage(message))
                .build());
    }

    private synchronized void send(PluginMessage message) {
        if (!ended && !cancelled) {
            observer.onNext(message);
        }
    }

    private synchronized void end(PluginMessage terminal) {
        if (ended) {
            return;
        }
        send(terminal);
        ended = true;
        if (!cancelled) {
            observer.onCompleted();
        }
    }
}
