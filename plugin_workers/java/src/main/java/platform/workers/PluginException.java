package platform.workers;

/**
 * A failure a plugin reports on purpose. The caller receives it as the invocation's terminal
 * PPP {@code Failed{code, message}}; the worker carries on serving.
 */
public class PluginException extends Exception {
    /** The arguments do not fit the primitive's input: missing, wrong type, out of range. */
    public static final String INVALID_INPUT = "invalid_input";
    /** The requested primitive is not hosted by this worker. */
    public static final String UNKNOWN_PRIMITIVE = "unknown_primitive";
    /** The handler's result cannot be written as JSON. */
    public static final String INVALID_OUTPUT = "invalid_output";
    /** A bug in the plugin: it threw something other than a PluginException. */
    public static final String INTERNAL = "internal";

    private final String code;

    /**
     * @param code machine-readable reason, e.g. {@link #INVALID_INPUT} or "division_by_zero"
     * @param message what went wrong, for a person: name the field or value at fault
     */
    public PluginException(String code, String message) {
        super(message);
        if (code == null || code.isEmpty()) {
            throw new IllegalArgumentException("a PluginException needs a non-empty code");
        }
        this.code = code;
    }

    public String code() {
        return code;
    }
}
