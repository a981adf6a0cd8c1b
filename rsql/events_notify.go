package rsql

import "sync"

// NotifyFunc wakes the streams waiting at the head of the events table
// after an insert has been committed. Insert methods return one: insert in
// the caller's transaction, commit, then call it (defer it before the
// commit). Calling it is optional (the head watcher finds new rows within
// one poll interval) and cheap: it never blocks; it is safe for
// concurrent use. On PostgreSQL it also asks the process's notify
// connection to send a NOTIFY, which wakes the streams of other
// processes; the NOTIFYs of a burst of calls are sent together.
type NotifyFunc func()

// StreamWatcher is a source of wake-ups for streams at the head.
type StreamWatcher interface {
	// C returns a channel that receives (or is closed) when new events
	// may be available. A stream obtains it when it starts waiting and
	// keeps it until it fires. A nil channel never fires.
	C() <-chan struct{}
}

// EventsNotifier is a StreamWatcher that inserts notify; see
// WithEventsNotifier.
type EventsNotifier interface {
	StreamWatcher
	// Notify signals that events were inserted. It must not block.
	Notify()
}

// stubNotifier never fires; it is the notifier of a table without one.
type stubNotifier struct{}

func (stubNotifier) C() <-chan struct{} { return nil }
func (stubNotifier) Notify()            {}

// inMemNotifier is the notifier of WithEventsInMemNotifier: each C call
// registers a new channel, and Notify signals every registered channel
// and forgets them.
type inMemNotifier struct {
	mu    sync.Mutex // protects chans
	chans []chan struct{}
}

// inMemNotifierBuffer lets Notify signal a channel without blocking on a
// stream that is not receiving yet; one pending signal is enough.
const inMemNotifierBuffer = 1

func (n *inMemNotifier) C() <-chan struct{} {
	ch := make(chan struct{}, inMemNotifierBuffer)
	n.mu.Lock()
	n.chans = append(n.chans, ch)
	n.mu.Unlock()
	return ch
}

func (n *inMemNotifier) Notify() {
	n.mu.Lock()
	chans := n.chans
	n.chans = nil
	n.mu.Unlock()
	for _, ch := range chans {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
