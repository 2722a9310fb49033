// A nats.go client that outlives its tokens. The token comes from a file that
// something else keeps fresh (the `nats-oidc-callout token --out FILE
// --refresh` sidecar, a Kubernetes projected token, a Vault agent sink);
// nats.TokenHandler reads it again at every connect and reconnect.
//
// The demo publishes MESSAGES numbered messages into the ORDERS stream, one
// every INTERVAL_MS, while a durable pull consumer acks them; it stops once it
// has them all and has reconnected MIN_RECONNECTS times, and prints a JSON
// summary.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	tokenFile := os.Getenv("NATS_TOKEN_FILE")
	var reconnects atomic.Int64

	// snippet:start
	nc, err := nats.Connect(os.Getenv("NATS_URL"),
		nats.Name(os.Getenv("NATS_NAME")),
		// Called at every connect and reconnect: the file always holds a valid token.
		nats.TokenHandler(func() string {
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				log.Printf("token: %v", err)
			}
			return strings.TrimSpace(string(b))
		}),
		// The policy grants `sub _INBOX.{claim.sub}.>`: replies come to this identity only.
		nats.CustomInboxPrefix(os.Getenv("NATS_INBOX_PREFIX")),
		nats.MaxReconnects(-1),
		// A refused reconnect (IdP briefly down) is retried, not fatal.
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectHandler(func(*nats.Conn) { reconnects.Add(1) }),
	)
	// snippet:end
	if err != nil {
		log.Fatalf("connect: %v", err)
	}
	defer nc.Close()

	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	consumer, err := js.Consumer(ctx, "ORDERS", os.Getenv("CONSUMER"))
	if err != nil {
		log.Fatalf("consumer: %v", err)
	}

	total := envInt("MESSAGES")
	var mu sync.Mutex
	deliveries, acked := map[int]int{}, map[int]bool{}
	consuming, err := consumer.Consume(func(m jetstream.Msg) {
		n, _ := strconv.Atoi(string(m.Data()))
		// A confirmed ack: an unconfirmed one may be lost in a reconnect.
		err := m.DoubleAck(ctx)
		mu.Lock()
		defer mu.Unlock()
		deliveries[n]++
		if err != nil {
			log.Printf("ack %d: %v (it will be redelivered)", n, err)
			return
		}
		acked[n] = true
	})
	if err != nil {
		log.Fatalf("consume: %v", err)
	}
	defer consuming.Stop()

	subject := os.Getenv("SUBJECT")
	for i := 1; i <= total; i++ {
		// The message id makes a retried publish land once.
		id := fmt.Sprintf("%s-%d", subject, i)
		for {
			_, err := js.Publish(ctx, subject, []byte(strconv.Itoa(i)), jetstream.WithMsgID(id))
			if err == nil {
				break
			}
			log.Printf("publish %d: %v (retrying)", i, err)
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Duration(envInt("INTERVAL_MS")) * time.Millisecond)
	}

	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		mu.Lock()
		done := len(acked) == total
		mu.Unlock()
		if done && reconnects.Load() >= int64(envInt("MIN_RECONNECTS")) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	mu.Lock()
	defer mu.Unlock()
	missing, duplicates := []int{}, 0
	for i := 1; i <= total; i++ {
		if !acked[i] {
			missing = append(missing, i)
		}
		duplicates += max(deliveries[i]-1, 0)
	}
	summary, _ := json.Marshal(map[string]any{"published": total, "received": len(acked),
		"duplicates": duplicates, "missing": missing, "reconnects": reconnects.Load()})
	fmt.Println(string(summary))
	if err := nc.Flush(); err != nil {
		log.Printf("flush: %v", err)
	}
	if len(missing) > 0 {
		os.Exit(1)
	}
}

func envInt(name string) int {
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	return n
}
