package order

import "context"

// WriteGroup writes orders as one group (GroupCommitConfig), for tests that
// need a group's exact members and their order.
func WriteGroup(s *Store, ctx context.Context, orders []*Order) []error {
	return s.writeGroup(ctx, orders)
}
