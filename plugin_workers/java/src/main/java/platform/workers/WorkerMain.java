package platform.workers;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.ServiceLoader;

/**
 * Command line of a Java PPP worker:
 *
 * <pre>
 * java -jar ppp-java-worker.jar --service SERVICE (--unix PATH | --listen HOST:PORT)
 * java -jar ppp-java-worker.jar --stem CONTROL_PATH --unix PATH
 * </pre>
 *
 * <p>With {@code --stem} the worker is a stem cell: it serves PPP on PATH at once but hosts no
 * plugin until the supervisor binds it to one through the control socket (see {@link StemCell}).
 *
 * SERVICE is a {@link PluginService} class name (platform.workers.AddPluginService) or the
 * primitive of one listed in META-INF/services (add_numbers). The worker runs until SIGTERM or
 * SIGINT, or until the process PPP_PARENT_PID (its supervisor) is gone. It prints nothing on
 * stdout; errors go to stderr with exit status 2 for usage and 1 for anything else.
 */
public final class WorkerMain {
    static final String USAGE =
            "usage: java -jar ppp-java-worker.jar --service CLASS_OR_PRIMITIVE (--unix PATH | --listen HOST:PORT)\n"
            + "       java -jar ppp-java-worker.jar --stem CONTROL_PATH --unix PATH";
    private static final long PARENT_POLL_MILLIS = 500;

    /** A problem that stops the worker from starting; its message is for the operator. */
    static final class StartupException extends Exception {
        final int exitStatus;

        StartupException(String message, int exitStatus) {
            super(message);
            this.exitStatus = exitStatus;
        }
    }

    record Options(String service, Path unix, InetSocketAddress listen, Path stem) {}

    private WorkerMain() {}

    public static void main(String[] args) {
        try {
            run(args);
        } catch (StartupException e) {
            System.err.println("ppp-java-worker: " + e.getMessage());
            System.exit(e.exitStatus);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void run(String[] args) throws StartupException, InterruptedException {
        Options options = parse(args);
        if (options == null) {
            System.out.println(USAGE);
            return;
        }
        watchParent(System.getenv("PPP_PARENT_PID"));
        PluginServer server;
        try {
            if (options.stem() != null) {
                server = PluginServer.listenUnix(PluginWorkerService.unbound(), options.unix());
            } else {
                PluginService plugin = loadService(options.service());
                server = options.unix() != null
                        ? PluginServer.listenUnix(plugin, options.unix())
                        : PluginServer.listenTcp(plugin, options.listen());
            }
        } catch (IOException e) {
            throw new StartupException(e.getMessage(), 1);
        }
        // SIGTERM and SIGINT run shutdown hooks: stop cleanly and remove the socket file.
        Runtime.getRuntime().addShutdownHook(new Thread(server::stop, "ppp-shutdown"));
        if (options.stem() != null) {
            StemCell.awaitBinding(options.stem(), server.service());
        }
        server.awaitTermination();
    }

    /** The parsed options, or null when help was asked for. */
    static Options parse(String[] args) throws StartupException {
        String service = null;
        String unix = null;
        String listen = null;
        String stem = null;
        for (int i = 0; i < args.length; i++) {
            String option = args[i];
            if (option.equals("-h") || option.equals("--help")) {
                return null;
            }
            if (!option.equals("--service") && !option.equals("--unix") && !option.equals("--listen")
                    && !option.equals("--stem")) {
                throw usage("unknown argument '" + option + "'");
            }
            if (i + 1 >= args.length) {
                throw usage(option + " needs a value");
            }
            String value = args[++i];
            switch (option) {
                case "--service" -> service = value;
                case "--unix" -> unix = value;
                case "--stem" -> stem = value;
                default -> listen = value;
            }
        }
        if (stem != null) {
            if (service != null || listen != null || unix == null) {
                throw usage("--stem takes --unix PATH and no --service or --listen (the plugin comes later)");
            }
        } else if (service == null) {
            throw usage("--service is required");
        }
        if ((unix == null) == (listen == null)) {
            throw usage("give exactly one of --unix PATH or --listen HOST:PORT");
        }
        return new Options(
                service,
                unix == null ? null : Path.of(unix),
                listen == null ? null : parseAddress(listen),
                stem == null ? null : Path.of(stem));
    }

    private static InetSocketAddress parseAddress(String hostPort) throws StartupException {
        int colon = hostPort.lastIndexOf(':');
        if (colon <= 0) {
            throw usage("--listen needs HOST:PORT, got '" + hostPort + "'");
        }
        String host = hostPort.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1); // [::1]:50051
        }
        int port;
        try {
            port = Integer.parseInt(hostPort.substring(colon + 1));
        } catch (NumberFormatException e) {
            port = -1;
        }
        if (port < 0 || port > 65535) {
            throw usage("--listen: invalid port in '" + hostPort + "'");
        }
        return new InetSocketAddress(host, port);
    }

    /** Instantiates the plugin named by its primitive (for listed plugins) or its class name. */
    static PluginService loadService(String name) throws StartupException {
        List<String> known = new ArrayList<>();
        for (PluginService candidate : ServiceLoader.load(PluginService.class)) {
            if (candidate.primitive().equals(name) || candidate.getClass().getName().equals(name)) {
                return candidate;
            }
            known.add(candidate.primitive() + " (" + candidate.getClass().getName() + ")");
        }
        Class<?> type;
        try {
            type = Class.forName(name);
        } catch (ClassNotFoundException e) {
            throw new StartupException(
                    "no plugin class or primitive named '" + name + "'; listed plugins: " + String.join(", ", known), 2);
        }
        if (!PluginService.class.isAssignableFrom(type)) {
            throw new StartupException(name + " is not a " + PluginService.class.getName(), 2);
        }
        try {
            return (PluginService) type.getConstructor().newInstance();
        } catch (ReflectiveOperationException e) {
            throw new StartupException("cannot create " + name + ": " + e, 1);
        }
    }

    /**
     * Exits when the supervisor that started this worker is gone, so no orphan outlives it.
     * The handle remembers the process's start time, so a recycled pid does not fool it.
     */
    static void watchParent(String parentPid) throws StartupException {
        if (parentPid == null || parentPid.isEmpty()) {
            return;
        }
        Optional<ProcessHandle> parent;
        try {
            parent = ProcessHandle.of(Long.parseLong(parentPid.trim()));
        } catch (NumberFormatException e) {
            throw new StartupException("PPP_PARENT_PID is not a process id: '" + parentPid + "'", 2);
        }
        ProcessHandle supervisor = parent.filter(ProcessHandle::isAlive)
                .orElseThrow(() -> new StartupException("parent process " + parentPid + " is not running", 1));
        Thread watcher = new Thread(() -> {
            try {
                while (supervisor.isAlive()) {
                    Thread.sleep(PARENT_POLL_MILLIS);
                }
            } catch (InterruptedException e) {
                return;
            }
            System.err.println("ppp-java-worker: parent process " + parentPid + " is gone, exiting");
            System.exit(0); // runs the shutdown hook, which removes the socket file
        }, "ppp-parent-watch");
        watcher.setDaemon(true);
        watcher.start();
    }

    private static StartupException usage(String problem) {
        return new StartupException(problem + "\n" + USAGE, 2);
    }
}
