package platform.workers;

import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.netty.NettyServerBuilder;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** A running PPP worker: the gRPC server for one plugin, on a Unix socket or a TCP address. */
public final class PluginServer {
    /** In-flight calls get this long to finish on stop; the supervisor allows about a second. */
    private static final long GRACE_MILLIS = 700;
    private static final long FORCED_STOP_MILLIS = 200;
    /** A worker serves a handful of connections; handlers run on gRPC's executor, not here. */
    private static final int IO_THREADS = 2;

    private final PluginWorkerService service;
    private final Server server;
    private final EventLoopGroup ioThreads;
    private final UnixSocketBridge bridge;
    private boolean stopped;

    private PluginServer(
            PluginWorkerService service, Server server, EventLoopGroup ioThreads, UnixSocketBridge bridge) {
        this.service = service;
        this.server = server;
        this.ioThreads = ioThreads;
        this.bridge = bridge;
    }

    /** Serves {@code plugin} on a TCP address, e.g. 127.0.0.1:50051. */
    public static PluginServer listenTcp(PluginService plugin, InetSocketAddress address) throws IOException {
        PluginWorkerService service = new PluginWorkerService(plugin);
        EventLoopGroup ioThreads = new NioEventLoopGroup(IO_THREADS);
        try {
            Server server = nettyServer(address, ioThreads).addService(service).build().start();
            return new PluginServer(service, server, ioThreads, null);
        } catch (IOException | RuntimeException e) {
            ioThreads.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS);
            throw e;
        }
    }

    /**
     * Serves {@code plugin} on a Unix socket at {@code socket} (mode 0600), replacing a stale
     * socket file left by a dead worker. gRPC itself listens on an ephemeral 127.0.0.1 port that
     * only accepts calls relayed from the socket (see {@link UnixSocketBridge}).
     */
    public static PluginServer listenUnix(PluginService plugin, Path socket) throws IOException {
        return listenUnix(new PluginWorkerService(plugin), socket);
    }

    /** Serves {@code service} (a stem cell's, bound later) on a Unix socket, as above. */
    static PluginServer listenUnix(PluginWorkerService service, Path socket) throws IOException {
        UnixSocketBridge bridge = new UnixSocketBridge(socket);
        EventLoopGroup ioThreads = new NioEventLoopGroup(IO_THREADS);
        Server server = null;
        try {
            server = nettyServer(new InetSocketAddress("127.0.0.1", 0), ioThreads)
                    .addService(ServerInterceptors.intercept(service, bridge.onlyBridgedCalls()))
                    .build()
                    .start();
            bridge.start(new InetSocketAddress("127.0.0.1", server.getPort()));
            return new PluginServer(service, server, ioThreads, bridge);
        } catch (IOException | RuntimeException e) {
            if (server != null) {
                server.shutdownNow();
            }
            ioThreads.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS);
            throw e;
        }
    }

    /**
     * Netty on its own I/O threads rather than gRPC's shared ones, so that stop() can end them:
     * the JVM's exit waits up to 300 ms for any thread still blocked in native I/O.
     */
    private static NettyServerBuilder nettyServer(InetSocketAddress address, EventLoopGroup ioThreads) {
        return NettyServerBuilder.forAddress(address)
                .channelType(NioServerSocketChannel.class)
                .bossEventLoopGroup(ioThreads)
                .workerEventLoopGroup(ioThreads);
    }

    /** The PPP service this server runs (a stem cell binds it to its plugin). */
    PluginWorkerService service() {
        return service;
    }

    /** Blocks until the server has stopped. */
    public void awaitTermination() throws InterruptedException {
        server.awaitTermination();
    }

    /**
     * Stops within about a second: Health turns NOT_SERVING, the socket file goes away, calls
     * in flight get a short grace period and are then cancelled. Safe to call more than once.
     */
    public void stop() {
        synchronized (this) {
            if (stopped) return;
            stopped = true;
        }
        service.stopServing();
        if (bridge != null) {
            bridge.stopAccepting();
        }
        server.shutdown();
        try {
            if (!server.awaitTermination(GRACE_MILLIS, TimeUnit.MILLISECONDS)) {
                server.shutdownNow();
                server.awaitTermination(FORCED_STOP_MILLIS, TimeUnit.MILLISECONDS);
            }
        } catch (InterruptedException e) {
            server.shutdownNow();
            Thread.currentThread().interrupt();
        } finally {
            if (bridge != null) {
                bridge.close();
            }
            ioThreads.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS).awaitUninterruptibly(FORCED_STOP_MILLIS);
        }
    }
}
