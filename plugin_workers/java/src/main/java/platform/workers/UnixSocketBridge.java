package platform.workers;

import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.io.Closeable;
import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Serves a Unix domain socket by relaying each accepted connection, byte for byte, to the gRPC
 * server on 127.0.0.1.
 *
 * <p>Why: Debian ships grpc-java's Netty transport without Netty's native epoll library, and
 * that is what Netty needs to listen on a Unix socket. JDK 17 can accept on one, so the bridge
 * does that and Netty keeps speaking HTTP/2 over loopback TCP.
 *
 * <p>The loopback port is reachable by every local user, which would bypass the socket file's
 * 0600 permissions; {@link #onlyBridgedCalls()} therefore refuses calls that did not arrive
 * through this bridge.
 */
final class UnixSocketBridge implements Closeable {
    private static final Logger LOG = Logger.getLogger(UnixSocketBridge.class.getName());
    /** sun_path in struct sockaddr_un holds 108 bytes including the terminating NUL. */
    private static final int MAX_SOCKET_PATH_BYTES = 107;
    private static final int S_IFMT = 0170000;
    private static final int S_IFSOCK = 0140000;

    private final Path socketPath;
    /** Local addresses of the bridge's TCP legs: the only peers the gRPC server may serve. */
    private final Set<SocketAddress> bridgedPeers = ConcurrentHashMap.newKeySet();
    private final Set<Connection> connections = ConcurrentHashMap.newKeySet();
    private final AtomicInteger connectionCount = new AtomicInteger();
    private ServerSocketChannel listener;
    private volatile boolean closed;

    UnixSocketBridge(Path socketPath) {
        this.socketPath = socketPath.toAbsolutePath();
    }

    /** Starts accepting on the socket path, relaying to {@code target}. */
    synchronized void start(InetSocketAddress target) throws IOException {
        listener = bindPrivately(socketPath);
        Thread acceptor = new Thread(() -> acceptLoop(target), "ppp-unix-accept");
        acceptor.setDaemon(true);
        acceptor.start();
    }

    /** A server interceptor that refuses every call not relayed by this bridge. */
    ServerInterceptor onlyBridgedCalls() {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(
                    ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
                SocketAddress peer = call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR);
                if (peer != null && bridgedPeers.contains(peer)) {
                    return next.startCall(call, headers);
                }
                call.close(Status.PERMISSION_DENIED.withDescription("this worker serves its Unix socket only"),
                        new Metadata());
                return new ServerCall.Listener<>() {};
            }
        };
    }

    /** Stops accepting and removes the socket file; open connections keep running. */
    synchronized void stopAccepting() {
        closed = true;
        if (listener != null) {
            try {
                listener.close();
            } catch (IOException e) {
                LOG.log(Level.FINE, "closing the Unix listener", e);
            }
            try {
                Files.deleteIfExists(socketPath);
            } catch (IOException e) {
                LOG.warning("cannot remove " + socketPath + ": " + e);
            }
        }
    }

    /** Stops accepting and drops every relayed connection. */
    @Override
    public void close() {
        stopAccepting();
        for (Connection connection : connections) {
            connection.close();
        }
    }

    private void acceptLoop(InetSocketAddress target) {
        while (!closed) {
            SocketChannel unix;
            try {
                unix = listener.accept();
            } catch (ClosedChannelException e) {
                return; // stopAccepting() closed the listener
            } catch (IOException e) {
                if (closed) return;
                LOG.warning("accept on " + socketPath + " failed: " + e);
                continue;
            }
            try {
                connect(unix, target);
            } catch (IOException e) {
                LOG.warning("cannot relay a connection to " + target + ": " + e);
                closeQuietly(unix);
            }
        }
    }

    private void connect(SocketChannel unix, InetSocketAddress target) throws IOException {
        SocketChannel tcp = SocketChannel.open();
        try {
            // Without TCP_NODELAY small HTTP/2 frames wait for Nagle's algorithm: 3.7 ms vs 1.4 ms a call.
            tcp.setOption(StandardSocketOptions.TCP_NODELAY, true);
            tcp.connect(target);
        } catch (IOException e) {
            closeQuietly(tcp);
            throw e;
        }
        // Registered before any byte is relayed, so the peer is known when its first call arrives.
        Connection connection = new Connection(unix, tcp, tcp.getLocalAddress());
        bridgedPeers.add(connection.tcpLocalAddress);
        connections.add(connection);
        int id = connectionCount.incrementAndGet();
        startPump("ppp-unix-" + id + "-in", unix, tcp, connection);
        startPump("ppp-unix-" + id + "-out", tcp, unix, connection);
    }

    private static void startPump(String name, SocketChannel from, SocketChannel to, Connection connection) {
        Thread thread = new Thread(() -> pump(from, to, connection), name);
        thread.setDaemon(true);
        thread.start();
    }

    private static void pump(SocketChannel from, SocketChannel to, Connection connection) {
        ByteBuffer buffer = ByteBuffer.allocateDirect(64 * 1024);
        try {
            while (from.read(buffer) >= 0) {
                buffer.flip();
                while (buffer.hasRemaining()) {
                    to.write(buffer);
                }
                buffer.clear();
            }
            // Pass the half-close on; the connection ends when both directions have.
            to.shutdownOutput();
            connection.directionDone();
        } catch (IOException e) {
            // One side broke or was closed: the other direction has nothing left to do either.
            connection.close();
        }
    }

    /** One relayed connection: a Unix socket and its TCP leg. */
    private final class Connection {
        private final SocketChannel unix;
        private final SocketChannel tcp;
        private final SocketAddress tcpLocalAddress;
        private final AtomicInteger openDirections = new AtomicInteger(2);

        Connection(SocketChannel unix, SocketChannel tcp, SocketAddress tcpLocalAddress) {
            this.unix = unix;
            this.tcp = tcp;
            this.tcpLocalAddress = tcpLocalAddress;
        }

        void directionDone() {
            if (openDirections.decrementAndGet() == 0) {
                close();
            }
        }

        void close() {
            if (connections.remove(this)) {
                bridgedPeers.remove(tcpLocalAddress);
                closeQuietly(unix);
                closeQuietly(tcp);
            }
        }
    }

    /**
     * Binds a listening socket at {@code path} that only this user can connect to.
     *
     * <p>bind() creates the file with the process umask; the JVM cannot set its own umask. So the
     * socket is bound inside a fresh 0700 directory, restricted to 0600, and only then renamed
     * into place: it is never reachable with looser permissions.
     */
    private static ServerSocketChannel bindPrivately(Path path) throws IOException {
        Path directory = path.getParent();
        if (directory == null || !Files.isDirectory(directory)) {
            throw new IOException("directory " + directory + " does not exist");
        }
        checkLength(path);
        removeStaleSocket(path);
        // Unpredictability is not needed: createDirectory fails rather than reuse an existing one.
        Path staging = directory.resolve(String.format(".ppp-%08x", ThreadLocalRandom.current().nextInt()));
        Path staged = staging.resolve("s");
        if (staged.toString().getBytes(StandardCharsets.UTF_8).length > MAX_SOCKET_PATH_BYTES) {
            // No room for the staging name: bind in place; the socket's directory guards the
            // instant before chmod.
            ServerSocketChannel channel = bind(path);
            Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
            return channel;
        }
        Files.createDirectory(
                staging, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        try {
            ServerSocketChannel channel = bind(staged);
            try {
                Files.setPosixFilePermissions(staged, PosixFilePermissions.fromString("rw-------"));
                Files.move(staged, path, StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException e) {
                channel.close();
                throw e;
            }
            return channel;
        } finally {
            Files.deleteIfExists(staged);
            Files.deleteIfExists(staging);
        }
    }

    private static ServerSocketChannel bind(Path path) throws IOException {
        ServerSocketChannel channel = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            channel.bind(UnixDomainSocketAddress.of(path));
        } catch (IOException e) {
            channel.close();
            throw new IOException("cannot listen on " + path + ": " + e.getMessage(), e);
        }
        return channel;
    }

    private static void checkLength(Path path) throws IOException {
        int length = path.toString().getBytes(StandardCharsets.UTF_8).length;
        if (length > MAX_SOCKET_PATH_BYTES) {
            throw new IOException(
                    "socket path is " + length + " bytes, the limit is " + MAX_SOCKET_PATH_BYTES + ": " + path);
        }
    }

    /** Deletes a socket file left by a dead worker; refuses to touch anything else. */
    private static void removeStaleSocket(Path path) throws IOException {
        if (!Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        int mode = (Integer) Files.getAttribute(path, "unix:mode", LinkOption.NOFOLLOW_LINKS);
        if ((mode & S_IFMT) != S_IFSOCK) {
            throw new IOException(path + " exists and is not a socket; not replacing it");
        }
        SocketChannel probe;
        try {
            probe = SocketChannel.open(UnixDomainSocketAddress.of(path));
        } catch (ConnectException e) {
            Files.deleteIfExists(path); // connection refused: nobody listens, the file is stale
            return;
        }
        probe.close();
        throw new IOException(path + " is in use by a running process");
    }

    private static void closeQuietly(Closeable closeable) {
        try {
            closeable.close();
        } catch (IOException e) {
            LOG.log(Level.FINE, "close", e);
        }
    }
}
