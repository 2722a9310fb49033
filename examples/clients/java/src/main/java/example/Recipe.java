package example;

import io.nats.client.Connection;
import io.nats.client.ConnectionListener;
import io.nats.client.JetStream;
import io.nats.client.JetStreamSubscription;
import io.nats.client.Message;
import io.nats.client.Nats;
import io.nats.client.Options;
import io.nats.client.PublishOptions;
import io.nats.client.PullSubscribeOptions;
import io.nats.client.support.JsonParser;
import io.nats.client.support.JsonValue;
import io.nats.client.support.JsonValueUtils;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

/**
 * A jnats client that outlives its tokens. It gets access tokens by the OAuth
 * client-credentials grant itself; jnats asks the token supplier at every
 * connect and reconnect, and the supplier renews the token ahead of its expiry.
 *
 * <p>The demo publishes MESSAGES numbered messages into the ORDERS stream, one
 * every INTERVAL_MS, while a durable pull consumer acks them; it stops once it
 * has them all and has reconnected MIN_RECONNECTS times, and prints a JSON
 * summary.
 */
public final class Recipe {

    /** Client credentials: discovery finds the token endpoint; a token is renewed at 70-80% of its lifetime. */
    static final class ClientCredentials implements Supplier<char[]> {
        private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        private final URI tokenEndpoint;
        private final String basic;
        private final String form;
        private String token;
        private Instant renewAt = Instant.MIN;

        ClientCredentials(String issuer, String clientId, String secret, String scope, String audience) throws Exception {
            JsonValue discovery = get(URI.create(issuer + "/.well-known/openid-configuration"));
            if (!issuer.equals(JsonValueUtils.readString(discovery, "issuer"))) {
                throw new IllegalStateException("discovery names another issuer");
            }
            tokenEndpoint = URI.create(JsonValueUtils.readString(discovery, "token_endpoint"));
            basic = Base64.getEncoder().encodeToString((enc(clientId) + ":" + enc(secret)).getBytes(StandardCharsets.UTF_8));
            form = "grant_type=client_credentials&scope=" + enc(scope) + "&resource=" + enc(audience);
        }

        @Override
        public synchronized char[] get() {
            if (Instant.now().isAfter(renewAt)) {
                try {
                    HttpRequest request = HttpRequest.newBuilder(tokenEndpoint)
                        .timeout(Duration.ofSeconds(10))
                        .header("Authorization", "Basic " + basic)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .POST(HttpRequest.BodyPublishers.ofString(form))
                        .build();
                    HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
                    if (response.statusCode() != 200) {
                        throw new IllegalStateException("token endpoint answered HTTP " + response.statusCode());
                    }
                    JsonValue body = JsonParser.parse(response.body());
                    long lifetimeMs = JsonValueUtils.readLong(body, "expires_in", 60) * 1000;
                    token = JsonValueUtils.readString(body, "access_token");
                    renewAt = Instant.now().plusMillis((long) (lifetimeMs * ThreadLocalRandom.current().nextDouble(0.7, 0.8)));
                } catch (Exception e) {
                    // jnats retries the connect; the held token serves while it is valid.
                    System.err.println("token renewal failed: " + e.getMessage());
                }
            }
            return token == null ? new char[0] : token.toCharArray();
        }

        private JsonValue get(URI uri) throws Exception {
            HttpRequest request = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10)).build();
            return JsonParser.parse(http.send(request, HttpResponse.BodyHandlers.ofString()).body());
        }

        private static String enc(String s) {
            return URLEncoder.encode(s, StandardCharsets.UTF_8);
        }
    }

    public static void main(String[] args) throws Exception {
        AtomicInteger reconnects = new AtomicInteger();
        // snippet:start
        ClientCredentials tokens = new ClientCredentials(env("OIDC_ISSUER"), env("OIDC_CLIENT_ID"),
            Files.readString(Path.of(env("OIDC_CLIENT_SECRET_FILE"))).trim(), env("OIDC_SCOPE"), env("OIDC_AUDIENCE"));
        Options options = Options.builder()
            .server(env("NATS_URL"))
            .connectionName(env("NATS_NAME"))
            // Asked at every connect and reconnect: always a valid token.
            .tokenSupplier(tokens)
            // The policy grants `sub _INBOX.{claim.sub}.>`: replies come to this identity only.
            .inboxPrefix(env("NATS_INBOX_PREFIX"))
            .maxReconnects(-1)
            .connectionListener((conn, event) -> {
                if (event == ConnectionListener.Events.RECONNECTED) {
                    reconnects.incrementAndGet();
                }
            })
            .build();
        try (Connection nc = Nats.connect(options)) {
            run(nc, reconnects);
        }
        // snippet:end
    }

    private static void run(Connection nc, AtomicInteger reconnects) throws Exception {
        JetStream js = nc.jetStream();
        int total = Integer.parseInt(env("MESSAGES"));
        String subject = env("SUBJECT");
        Map<Integer, Integer> deliveries = new ConcurrentHashMap<>();
        Set<Integer> acked = ConcurrentHashMap.newKeySet();
        // fastBind: no stream or consumer lookup, so no $JS.API.STREAM.INFO grant is needed.
        JetStreamSubscription pull = js.subscribe(null, PullSubscribeOptions.fastBind("ORDERS", env("CONSUMER")));
        Thread consuming = new Thread(() -> {
            while (acked.size() < total && !Thread.currentThread().isInterrupted()) {
                try {
                    for (Message m : pull.fetch(10, Duration.ofSeconds(1))) {
                        int n = Integer.parseInt(new String(m.getData(), StandardCharsets.UTF_8));
                        deliveries.merge(n, 1, Integer::sum);
                        try {
                            // A confirmed ack: an unconfirmed one may be lost in a reconnect.
                            m.ackSync(Duration.ofSeconds(5));
                            acked.add(n);
                        } catch (Exception e) {
                            System.err.println("ack " + n + ": " + e.getMessage() + " (it will be redelivered)");
                        }
                    }
                } catch (Exception e) {
                    System.err.println("fetch: " + e.getMessage());
                }
            }
        });
        consuming.setDaemon(true);
        consuming.start();

        for (int i = 1; i <= total; i++) {
            // The message id makes a retried publish land once.
            PublishOptions once = PublishOptions.builder().messageId(subject + "-" + i).build();
            while (true) {
                try {
                    js.publish(subject, String.valueOf(i).getBytes(StandardCharsets.UTF_8), once);
                    break;
                } catch (Exception e) {
                    System.err.println("publish " + i + ": " + e.getMessage() + " (retrying)");
                    Thread.sleep(200);
                }
            }
            Thread.sleep(Integer.parseInt(env("INTERVAL_MS")));
        }

        long deadline = System.currentTimeMillis() + 120_000;
        while (System.currentTimeMillis() < deadline
            && (acked.size() < total || reconnects.get() < Integer.parseInt(env("MIN_RECONNECTS")))) {
            Thread.sleep(100);
        }
        consuming.interrupt();
        consuming.join(5000);

        List<Integer> missing = new ArrayList<>();
        int duplicates = 0;
        for (int i = 1; i <= total; i++) {
            if (!acked.contains(i)) {
                missing.add(i);
            }
            duplicates += Math.max(deliveries.getOrDefault(i, 0) - 1, 0);
        }
        System.out.printf("{\"published\":%d,\"received\":%d,\"duplicates\":%d,\"missing\":%s,\"reconnects\":%d}%n",
            total, acked.size(), duplicates, missing, reconnects.get());
        nc.flush(Duration.ofSeconds(5));
        if (!missing.isEmpty()) {
            throw new IllegalStateException(missing.size() + " messages were not acked");
        }
    }

    private static String env(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalStateException(name + " is not set");
        }
        return v;
    }
}
