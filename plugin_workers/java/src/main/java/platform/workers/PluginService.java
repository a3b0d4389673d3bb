package platform.workers;

import java.util.Map;

/**
 * One primitive hosted by a Java PPP worker. A plugin is one small subclass:
 *
 * <pre>{@code
 * public final class AddPluginService extends PluginService {
 *     public String primitive() { return "add_numbers"; }
 *
 *     public Map<String, Object> handle(Map<String, Object> arguments, InvocationContext context)
 *             throws PluginException {
 *         double a = requireNumber(arguments, "operand1");
 *         double b = requireNumber(arguments, "operand2");
 *         context.progress(50, "Performing...");
 *         return Json.object("result", a + b);
 *     }
 * }
 * }</pre>
 *
 * listed in {@code META-INF/services/platform.workers.PluginService} and run with
 * {@code java -jar ppp-java-worker.jar --service add_numbers --unix /path/worker.sock}.
 * The server around it ({@link PluginWorkerService}) turns the result into PPP Completed and a
 * {@link PluginException} into PPP Failed. Subclasses need a public no-argument constructor.
 */
public abstract class PluginService {
    /** The primitive's name, e.g. "add_numbers"; Invoke requests for any other name fail. */
    public abstract String primitive();

    /**
     * Runs one invocation. Called on a gRPC thread; concurrent invocations run concurrently,
     * so keep the instance free of per-call state.
     *
     * @param arguments the Invoke arguments, a parsed JSON object (see {@link Json})
     * @return the result, written as JSON into Completed.output
     * @throws PluginException for a failure the caller should see as PPP Failed{code, message}
     */
    public abstract Map<String, Object> handle(Map<String, Object> arguments, InvocationContext context)
            throws PluginException;

    /** The InitResponse message. */
    public String readyMessage() {
        return primitive() + " ready";
    }

    /**
     * Receives Init's config (an empty map when none was sent). The default accepts anything.
     *
     * @throws PluginException to refuse the config: Init then answers ok=false with the message
     */
    public void init(Map<String, Object> config) throws PluginException {}

    /** The argument {@code name} as a finite number, or an invalid_input failure naming it. */
    protected static double requireNumber(Map<String, Object> arguments, String name) throws PluginException {
        if (!arguments.containsKey(name)) {
            throw new PluginException(PluginException.INVALID_INPUT, "'" + name + "' is required");
        }
        Object value = arguments.get(name);
        if (!(value instanceof Double number)) {
            throw new PluginException(
                    PluginException.INVALID_INPUT, "'" + name + "' must be a number, got " + Json.typeName(value));
        }
        if (!Double.isFinite(number)) {
            throw new PluginException(PluginException.INVALID_INPUT, "'" + name + "' must be a finite number");
        }
        return number;
    }
}
