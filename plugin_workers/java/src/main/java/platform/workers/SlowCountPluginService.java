package platform.workers;

import java.util.Map;

/** {@code slow_count_java}: counts to {@code steps}, one progress message per step (the Java twin of slow_count). */
public final class SlowCountPluginService extends PluginService {
    @Override
    public String primitive() {
        return "slow_count_java";
    }

    @Override
    public String readyMessage() {
        return "Slow counter (Java) ready";
    }

    @Override
    public Map<String, Object> handle(Map<String, Object> arguments, InvocationContext context)
            throws PluginException {
        int steps = optionalInt(arguments, "steps", 5, 1, 100);
        int delayMs = optionalInt(arguments, "delay_ms", 600, 0, 10_000);
        long started = System.nanoTime();
        for (int step = 1; step <= steps; step++) {
            if (context.isCancelled()) {
                throw new PluginException("cancelled", "the caller went away after " + (step - 1) + " steps");
            }
            try {
                Thread.sleep(delayMs);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new PluginException("cancelled", "interrupted after " + (step - 1) + " steps");
            }
            context.progress(100.0 * step / steps, "Counted " + step + " of " + steps);
        }
        double elapsedMs = Math.round((System.nanoTime() - started) / 100_000.0) / 10.0;
        return Json.object("counted", (double) steps, "elapsed_ms", elapsedMs);
    }

    private static int optionalInt(Map<String, Object> arguments, String name, int fallback, int min, int max)
            throws PluginException {
        if (!arguments.containsKey(name)) {
            return fallback;
        }
        double value = requireNumber(arguments, name);
        if (value != Math.rint(value) || value < min || value > max) {
            throw new PluginException(
                    PluginException.INVALID_INPUT, "'" + name + "' must be an integer from " + min + " to " + max);
        }
        return (int) value;
    }
}
