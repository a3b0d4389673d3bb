package platform.workers;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small, strict JSON (RFC 8259) reader and writer for plugin arguments and results.
 *
 * <p>Values map to Java as: object → {@code Map<String, Object>} (insertion-ordered), array →
 * {@code List<Object>}, string → {@code String}, number → {@code Double}, true/false →
 * {@code Boolean}, null → {@code null}. Numbers are doubles, as in JavaScript; one too large
 * for a double reads as an infinity, which callers that need finite numbers must refuse.
 *
 * <p>Strict on purpose: no comments, trailing commas, single quotes, NaN, leading zeros or
 * duplicate keys, and UTF-8 only. Plugin input comes from outside; anything ambiguous is
 * rejected rather than guessed at.
 */
public final class Json {
    /** Deeper documents are refused: recursion must not overflow a worker thread's stack. */
    public static final int MAX_DEPTH = 64;

    /** The input is not a JSON document of the expected shape. */
    public static final class ParseException extends Exception {
        ParseException(String message) {
            super(message);
        }
    }

    private Json() {}

    /** Parses UTF-8 bytes holding one JSON object. */
    public static Map<String, Object> parseObject(byte[] utf8) throws ParseException {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(utf8))
                    .toString();
        } catch (CharacterCodingException e) {
            throw new ParseException("not valid UTF-8");
        }
        Object value = parse(text);
        if (!(value instanceof Map)) {
            throw new ParseException("expected a JSON object, got " + typeName(value));
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> object = (Map<String, Object>) value;
        return object;
    }

    /** Parses one JSON value; only whitespace may surround it. */
    public static Object parse(String text) throws ParseException {
        Reader reader = new Reader(text);
        reader.skipWhitespace();
        Object value = reader.readValue(0);
        reader.skipWhitespace();
        if (!reader.atEnd()) {
            throw reader.error("unexpected content after the JSON value");
        }
        return value;
    }

    /**
     * Serialises {@code value} (built from the types listed above; any {@code Number} is
     * accepted) as compact JSON. Non-ASCII characters are written as {@code \\uXXXX} escapes,
     * so the output is plain ASCII, valid UTF-8 even for unpaired surrogates.
     *
     * @throws IllegalArgumentException for a non-finite number, a non-string key or a value of
     *     another type
     */
    public static String write(Object value) {
        StringBuilder out = new StringBuilder();
        writeValue(value, out, 0);
        return out.toString();
    }

    /** An insertion-ordered object from alternating keys and values: {@code object("a", 1.0)}. */
    public static Map<String, Object> object(Object... keysAndValues) {
        if (keysAndValues.length % 2 != 0) {
            throw new IllegalArgumentException("object() needs key, value pairs");
        }
        Map<String, Object> object = new LinkedHashMap<>();
        for (int i = 0; i < keysAndValues.length; i += 2) {
            if (!(keysAndValues[i] instanceof String key)) {
                throw new IllegalArgumentException("object keys must be strings: " + keysAndValues[i]);
            }
            object.put(key, keysAndValues[i + 1]);
        }
        return object;
    }

    /** The JSON type of a parsed value, for error messages: "number", "string", "null"... */
    public static String typeName(Object value) {
        if (value == null) return "null";
        if (value instanceof Boolean) return "boolean";
        if (value instanceof Number) return "number";
        if (value instanceof String) return "string";
        if (value instanceof Map) return "object";
        if (value instanceof List) return "array";
        return value.getClass().getSimpleName();
    }

    private static void writeValue(Object value, StringBuilder out, int depth) {
        if (depth > MAX_DEPTH) {
            throw new IllegalArgumentException("value nested deeper than " + MAX_DEPTH + " levels");
        }
        if (value == null) {
            out.append("null");
        } else if (value instanceof Boolean bool) {
            out.append(bool.booleanValue());
        } else if (value instanceof Double || value instanceof Float) {
            double number = ((Number) value).doubleValue();
            if (!Double.isFinite(number)) {
                throw new IllegalArgumentException("JSON has no representation for " + number);
            }
            out.append(number);
        } else if (value instanceof Number number) {
            out.append(number);
        } else if (value instanceof String string) {
            writeString(string, out);
        } else if (value instanceof Map<?, ?> map) {
            out.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> entry : map.entrySet()) {
                if (!(entry.getKey() instanceof String key)) {
                    throw new IllegalArgumentException("object keys must be strings: " + entry.getKey());
                }
                if (!first) out.append(',');
                first = false;
                writeString(key, out);
                out.append(':');
                writeValue(entry.getValue(), out, depth + 1);
            }
            out.append('}');
        } else if (value instanceof List<?> list) {
            out.append('[');
            for (int i = 0; i < list.size(); i++) {
                if (i > 0) out.append(',');
                writeValue(list.get(i), out, depth + 1);
            }
            out.append(']');
        } else {
            throw new IllegalArgumentException("cannot write a " + value.getClass().getName() + " as JSON");
        }
    }

    private static void writeString(String string, StringBuilder out) {
        out.append('"');
        for (int i = 0; i < string.length(); i++) {
            char c = string.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                default -> {
                    if (c < 0x20 || c >= 0x7f) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }

    /** Recursive-descent reader over one JSON text. */
    private static final class Reader {
        private final String text;
        private int position;

        Reader(String text) {
            this.text = text;
        }

        boolean atEnd() {
            return position >= text.length();
        }

        ParseException error(String message) {
            return new ParseException(message + " at offset " + position);
        }

        void skipWhitespace() {
            while (!atEnd()) {
                char c = text.charAt(position);
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
                position++;
            }
        }

        Object readValue(int depth) throws ParseException {
            if (atEnd()) throw error("unexpected end of input");
            char c = text.charAt(position);
            return switch (c) {
                case '{' -> readObject(depth + 1);
                case '[' -> readArray(depth + 1);
                case '"' -> readString();
                case 't' -> readLiteral("true", Boolean.TRUE);
                case 'f' -> readLiteral("false", Boolean.FALSE);
                case 'n' -> readLiteral("null", null);
                default -> {
                    if (c == '-' || (c >= '0' && c <= '9')) yield readNumber();
                    throw error("unexpected character '" + c + "'");
                }
            };
        }

        private void checkDepth(int depth) throws ParseException {
            if (depth > MAX_DEPTH) throw error("nested deeper than " + MAX_DEPTH + " levels");
        }

        private Map<String, Object> readObject(int depth) throws ParseException {
            checkDepth(depth);
            position++; // '{'
            Map<String, Object> object = new LinkedHashMap<>();
            skipWhitespace();
            if (consume('}')) return object;
            while (true) {
                skipWhitespace();
                if (atEnd() || text.charAt(position) != '"') throw error("expected a string key");
                int keyPosition = position;
                String key = readString();
                skipWhitespace();
                if (!consume(':')) throw error("expected ':' after an object key");
                skipWhitespace();
                Object value = readValue(depth);
                // Duplicate keys are legal JSON but mean different things to different parsers.
                if (object.containsKey(key)) {
                    position = keyPosition;
                    throw error("duplicate key \"" + key + "\"");
                }
                object.put(key, value);
                skipWhitespace();
                if (consume('}')) return object;
                if (!consume(',')) throw error("expected ',' or '}' in an object");
            }
        }

        private List<Object> readArray(int depth) throws ParseException {
            checkDepth(depth);
            position++; // '['
            List<Object> array = new ArrayList<>();
            skipWhitespace();
            if (consume(']')) return array;
            while (true) {
                skipWhitespace();
                array.add(readValue(depth));
                skipWhitespace();
                if (consume(']')) return array;
                if (!consume(',')) throw error("expected ',' or ']' in an array");
            }
        }

        private String readString() throws ParseException {
            position++; // opening quote
            StringBuilder out = new StringBuilder();
            while (true) {
                if (atEnd()) throw error("unterminated string");
                char c = text.charAt(position++);
                if (c == '"') return out.toString();
                if (c < 0x20) {
                    position--;
                    throw error("control character in a string");
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                if (atEnd()) throw error("unterminated escape");
                char escape = text.charAt(position++);
                switch (escape) {
                    case '"' -> out.append('"');
                    case '\\' -> out.append('\\');
                    case '/' -> out.append('/');
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'n' -> out.append('\n');
                    case 'r' -> out.append('\r');
                    case 't' -> out.append('\t');
                    case 'u' -> out.append(readHexChar());
                    default -> {
                        position--;
                        throw error("invalid escape '\\" + escape + "'");
                    }
                }
            }
        }

        private char readHexChar() throws ParseException {
            if (position + 4 > text.length()) throw error("incomplete \\u escape");
            int code = 0;
            for (int i = 0; i < 4; i++) {
                int digit = Character.digit(text.charAt(position), 16);
                if (digit < 0) throw error("invalid hex digit in a \\u escape");
                code = code * 16 + digit;
                position++;
            }
            return (char) code;
        }

        private Object readLiteral(String literal, Object value) throws ParseException {
            if (!text.startsWith(literal, position)) throw error("invalid literal");
            position += literal.length();
            return value;
        }

        private Double readNumber() throws ParseException {
            int start = position;
            consume('-');
            if (consume('0')) {
                if (!atEnd() && isDigit(text.charAt(position))) throw error("leading zero in a number");
            } else if (!readDigits()) {
                throw error("expected a digit");
            }
            if (consume('.') && !readDigits()) throw error("expected a digit after '.'");
            if (consume('e') || consume('E')) {
                if (!consume('+')) consume('-');
                if (!readDigits()) throw error("expected a digit in the exponent");
            }
            // The grammar is checked above; Double.parseDouble alone would accept "1d" or "0x1p3".
            return Double.parseDouble(text.substring(start, position));
        }

        private boolean readDigits() {
            int start = position;
            while (!atEnd() && isDigit(text.charAt(position))) position++;
            return position > start;
        }

        private static boolean isDigit(char c) {
            return c >= '0' && c <= '9';
        }

        private boolean consume(char expected) {
            if (!atEnd() && text.charAt(position) == expected) {
                position++;
                return true;
            }
            return false;
        }
    }
}
