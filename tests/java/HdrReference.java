// HdrHistogram's reference (Java) figures for coord's tests: one JVM answers many requests.
//
// Run as a single-file program with the HdrHistogram jar on the class path:
//     java -cp /usr/share/java/hdrhistogram.jar HdrReference.java
// Reads one request per line on stdin, answers on stdout, flushed after each answer:
//     percentiles BASE64 LEVEL...  ->  one line: getValueAtPercentile(LEVEL) for each LEVEL
//     hgrm BASE64 RATIO            ->  outputPercentileDistribution(5 ticks, RATIO), then "END"
// BASE64 is the standard compressed histogram (what coord stores in results.json).
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.util.Base64;
import org.HdrHistogram.Histogram;

public class HdrReference {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "US-ASCII"));
        PrintStream out = new PrintStream(System.out, false, "US-ASCII");
        String line;
        while ((line = in.readLine()) != null) {
            String[] words = line.trim().split(" ");
            ByteBuffer bytes = ByteBuffer.wrap(Base64.getDecoder().decode(words[1]));
            Histogram histogram = Histogram.decodeFromCompressedByteBuffer(bytes, 0);
            if (words[0].equals("percentiles")) {
                StringBuilder values = new StringBuilder();
                for (int i = 2; i < words.length; i++) {
                    double level = Double.parseDouble(words[i]);
                    values.append(i > 2 ? " " : "").append(histogram.getValueAtPercentile(level));
                }
                out.println(values);
            } else if (words[0].equals("hgrm")) {
                histogram.outputPercentileDistribution(out, 5, Double.parseDouble(words[2]));
                out.println("END");
            } else {
                out.println("ERROR unknown request " + words[0]);
            }
            out.flush();
        }
    }
}
